"""Everything a lent GPU should measure, in one command and one report file.

    python tools/gpu_check.py --out gpu_report.md            # on a CUDA machine
    python tools/gpu_check.py --small --out report.md        # anywhere, tiny shapes

It runs, in order, and writes each result as it comes:

1. the ``gpu``-marked tests (``pytest -m gpu``);
2. the fused mix against the reference at the 60m and 1b shapes (L, D) in bf16, forward
   and backward, on a micro-batch of ``--tokens`` tokens: the largest differences of
   the output, the state gradients and dP, against fp32 truth for both;
3. ``tools/bench_mix.py``: the traffic model, then the measured mix against its bound,
   the reference, the row-by-row and the grouped fused kernels, at 24 and 48 blocks;
4. ``tools/bench_step.py --preset 1b --seq-len 2048``: cascaded, Ancre and uniform,
   without and with block recompute, and at 48 blocks.

On one H100 the whole run takes a few minutes (the step benchmarks dominate), under
the 10 minutes a lent machine gives one command. ``--small`` uses tiny shapes so that
the CPU (Triton's interpreter) can run it: tests/tools/test_gpu_check.py does, so the
command cannot rot. Exit code 1 when a step failed; the report says which.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from ancre.kernels import reference_backend, select_mix, triton_unavailable
from ancre.model import PRESETS
from ancre.model.topology import AncreTopology

REPO = Path(__file__).resolve().parents[1]


def parity(num_layers: int, hidden: int, tokens: int, device: torch.device) -> str:
    """Largest errors of the fused and reference mixes (bf16) against an fp32 truth."""
    torch.manual_seed(0)
    results = {}
    for name, backend, dtype in (
        ("truth", reference_backend, torch.float32),
        ("reference", reference_backend, torch.bfloat16),
        ("triton", select_mix("triton")[1], torch.bfloat16),
    ):
        torch.manual_seed(0)
        topology = AncreTopology(num_layers, backend, temperature=0.5).to(device)
        with torch.no_grad():
            topology.logits.normal_()
        torch.manual_seed(1)
        h0 = torch.randn(tokens, hidden, device=device)
        ys = [torch.randn(tokens, hidden, device=device) * 0.5 for _ in range(num_layers)]
        target = torch.randn(tokens, hidden, device=device)
        h0 = h0.to(dtype).requires_grad_(True)
        outputs = [y.to(dtype) for y in ys]  # precomputed block outputs y_j
        blocks = [lambda h, y=y: y + 0.5 * h for y in outputs]
        out = topology(blocks, h0)[-1]
        ((out.float() - target) ** 2).mean().backward()
        results[name] = tuple(t.detach().float() for t in (out, h0.grad, topology.logits.grad))
    truth = results["truth"]
    lines = []
    for name in ("reference", "triton"):
        errors = [float((a - b).abs().max()) for a, b in zip(results[name], truth, strict=True)]
        cells = " | ".join(f"{e:.2e}" for e in errors)
        lines.append(f"| L={num_layers} D={hidden} | {name} | {cells} |")
    return "\n".join(lines)


def run(command: list[str], timeout: float) -> tuple[int, str]:
    """Runs a command; its exit code and output."""
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        return 124, f"timed out after {timeout:.0f} s\n{error.stdout or ''}"
    return done.returncode, done.stdout + done.stderr


def main() -> int:
    """Runs every check and writes the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_report.md"))
    parser.add_argument("--small", action="store_true", help="tiny shapes (any machine)")
    parser.add_argument("--tokens", type=int, default=16384, help="tokens of the parity check")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if why := triton_unavailable():
        sys.exit(f"tools/gpu_check.py: the fused kernels cannot run here: {why}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (interpreter)"
    report = [f"# ancre GPU check: {name}", "", f"torch {torch.__version__}, {time.ctime()}", ""]
    failed = []

    def write() -> None:
        args.out.write_text("\n".join(report) + "\n")

    started = time.perf_counter()
    python = sys.executable
    tests = [python, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"]
    code, output = run(tests, 600)
    report += ["## pytest -m gpu", "", "```", output.strip()[-3000:], "```", ""]
    if code not in (0, 5):
        failed.append("pytest -m gpu")
    write()

    shapes = (
        [(2, 16)]
        if args.small
        else [(PRESETS[p].num_layers, PRESETS[p].hidden_size) for p in ("60m", "1b")]
    )
    tokens = 64 if args.small else args.tokens
    report += ["## Fused mix against the reference (bf16; max |error| against fp32)", "",
               "| shape | backend | output | dh0 | dP |", "|---|---|---|---|---|"]  # fmt: skip
    for num_layers, hidden in shapes:
        report.append(parity(num_layers, hidden, tokens, device))
    report.append("")
    write()

    presets = ["tiny"] if args.small else ["60m", "1b"]
    mix = [python, "tools/bench_mix.py", "--presets", *presets]
    if args.small:
        mix += ["--tokens", "512", "--repeats", "1", "--seq-len", "256"]
    else:  # the row-by-row and the grouped fused mix, at the paper's depth and twice it
        mix += ["--layers", "24", "48"]
    code, output = run(mix, 600)
    report += ["## tools/bench_mix.py", "", "```", output.strip(), "```", ""]
    if code:
        failed.append("bench_mix")
    write()

    step = [python, "tools/bench_step.py", "--precision", "bf16"]
    if args.small:
        step += ["--preset", "tiny", "--seq-len", "64", "--micro-batch", "2", "--steps", "2",
                 "--warmup", "1", "--vocab-size", "512"]  # fmt: skip
    else:
        step += ["--preset", "1b", "--seq-len", "2048", "--micro-batch", "4"]
    runs = [("none recompute", ["--checkpointing", "none"]),
            ("blocks recompute", ["--checkpointing", "blocks"])]  # fmt: skip
    if not args.small:  # the 1b width at 48 blocks: where the mix costs most
        runs.append(("48 blocks, none recompute", ["--checkpointing", "none", "--layers", "48"]))
    for label, extra in runs:
        code, output = run([*step, *extra], 600)
        report += [f"## tools/bench_step.py ({label})", "", "```", output.strip(), "```", ""]
        if code:
            failed.append(f"bench_step {label}")
        write()

    elapsed = time.perf_counter() - started
    report += [f"Finished in {elapsed:.0f} s; failed: {', '.join(failed) or 'nothing'}."]
    write()
    print(f"wrote {args.out} ({elapsed:.0f} s; failed: {', '.join(failed) or 'nothing'})")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
