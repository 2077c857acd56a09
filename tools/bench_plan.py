"""The plan's peak memory per rank against the peak measured in real runs on the CPU.

For each preset, ZeRO stage and process count, one world of ``--processes`` gloo
processes (torchrun) trains ``--steps`` steps of the quickstart config at that preset
(fp32, AdamW, micro-batch ``--micro-batch`` of ``--seq-len`` tokens, one micro-step per
step). Each process runs ``ancre train`` inside ``torch.profiler`` with memory
profiling, which records every block the CPU allocator hands out and takes back from
before the model is built to the end of the run. The measured peak is the largest
sum of the blocks held at once, replayed from those records (not the process's
resident memory, which also holds the interpreter, the libraries and the allocator's
free pages). The replay, not the profiler's running "Total Allocated", because a
block freed on a thread the profiler does not record (gloo's, which releases the
buffers of asynchronous collectives) is never subtracted from that total; the replay
counts an address handed out again as freed. The peak before the first forward
(building, DeepSpeed's set-up) is given apart. The plan is
``ancre.sizing.plan.size_plan`` of the same config; the table gives the largest peak
over the processes of each world and plan / measured, in one run.

    python tools/bench_plan.py --presets tiny,60m,350m --stages 0,1,2,3 --processes 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20


def worker(out: Path, args: list[str]) -> None:
    """One rank: ``ancre ARGS`` under the memory profiler; writes its peaks to ``out``."""
    from torch.profiler import ProfilerActivity, profile

    from ancre.cli import main
    from ancre.model.topology.base import MIX_RANGE

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorded:
        code = main(args)
    trace = out.with_suffix(".trace.json")
    recorded.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    trace.unlink()
    first_mix = min((e["ts"] for e in events if e.get("name") == MIX_RANGE), default=None)
    memory = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    live: dict[int, int] = {}
    total = peak = setup_peak = 0
    for event in memory:  # the tensors held, replayed allocation by allocation
        address, size = event["args"]["Addr"], event["args"]["Bytes"]
        total -= live.pop(address, 0)  # an address handed out again was freed before
        if size > 0:
            live[address] = size
            total += size
        peak = max(peak, total)
        if first_mix is None or event["ts"] < first_mix:
            setup_peak = peak
    record = {"code": code, "peak": peak, "setup_peak": setup_peak,
              "rank": int(os.environ.get("RANK", 0))}  # fmt: skip
    out.write_text(json.dumps(record))


def overrides(preset: str, stage: int, processes: int, args: argparse.Namespace) -> list[str]:
    """The quickstart config's overrides for one measured run."""
    return [
        f"model.preset={preset}", f"train.zero_stage={stage}", f"train.steps={args.steps}",
        f"train.micro_batch_size={args.micro_batch}",
        f"train.global_batch_size={args.micro_batch * processes}", f"data.seq_len={args.seq_len}",
        "train.precision=fp32", "train.warmup_steps=0", "eval.every=0", "eval.tokens=256",
        "checkpoint.every=0", "checkpoint.topology_every=0", "data.num_workers=0",
        f"data.tokenizer={args.tokenizer}", "train.log_every=1",
    ]  # fmt: skip


def measure(
    preset: str, stage: int, processes: int, args: argparse.Namespace, folder: Path
) -> dict:
    """One world's records (the rank with the largest peak) and the plan of its config."""
    from ancre.config import load_config
    from ancre.data.tokenizer import Tokenizer
    from ancre.sizing.plan import size_plan

    name = f"{preset}-z{stage}-p{processes}"
    settings = [*overrides(preset, stage, processes, args), f"run.out_dir={folder / name}"]
    config = load_config([str(ROOT / "configs/quickstart.yaml")], settings)
    plan = size_plan(config, Tokenizer(args.tokenizer).vocab_size, processes, "cpu")
    outs = [folder / f"{name}.rank{rank}.json" for rank in range(processes)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", str(Path(__file__).resolve()),
        "--worker", str(folder / f"{name}.rank%d.json"), "--",
        "train", str(ROOT / "configs/quickstart.yaml"), *settings,
    ]  # fmt: skip
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode != 0 or not all(out.exists() for out in outs):
        raise SystemExit(f"{name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    worst = max((json.loads(out.read_text()) for out in outs), key=lambda r: r["peak"])
    return {"name": name, "preset": preset, "stage": stage, "processes": processes,
            "params": plan.num_params, "plan": plan.peak, "computing": plan.computing,
            "stepping": plan.states.stepping, **worst}  # fmt: skip


def table(rows: list[dict]) -> list[str]:
    """The markdown table of the measured worlds."""
    lines = [
        "| preset | params | ZeRO | processes | plan MiB (backward, step) | measured MiB "
        "(set-up) | plan / measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['params'] / 1e6:.1f}M | {r['stage']} | {r['processes']} | "
            f"{r['plan'] / MB:.0f} ({r['computing'] / MB:.0f}, {r['stepping'] / MB:.0f}) | "
            f"{r['peak'] / MB:.0f} ({r['setup_peak'] / MB:.0f}) | {r['plan'] / r['peak']:.3f} |"
        )
    return lines


def main() -> None:
    """Measures every combination (or, with --worker, is one rank of one world)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="tiny,60m,350m")
    parser.add_argument("--stages", default="0,1,2,3")
    parser.add_argument("--processes", default="1,2", help="process counts, comma-separated")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--tokenizer", help="a tokenizer file (default: trains one of 1024)")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.worker is not None:
        rank = int(os.environ.get("RANK", 0))
        worker(Path(args.worker.replace("%d", str(rank))), [a for a in rest if a != "--"])
        return
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as temporary:
        folder = Path(temporary)
        if args.tokenizer is None:
            args.tokenizer = str(folder / "tokenizer.model")
            subprocess.run(
                [sys.executable, str(ROOT / "tools/train_tokenizer.py"), "--data",
                 str(ROOT / "data/sample"), "--out", args.tokenizer, "--vocab-size", "1024"],
                check=True, capture_output=True,
            )  # fmt: skip
        rows = []
        print(
            f"fp32, AdamW, micro-batch {args.micro_batch} x {args.seq_len} tokens, "
            f"{args.steps} steps; peak of the bytes held per process, replayed from the "
            "allocator's records (the largest of each world's processes), against the plan",
            flush=True,
        )
        for preset in args.presets.split(","):
            for stage in (int(s) for s in args.stages.split(",")):
                for processes in (int(p) for p in args.processes.split(",")):
                    rows.append(measure(preset, stage, processes, args, folder))
                    print(table(rows[-1:])[-1], flush=True)
    lines = table(rows)
    ratios = [r["plan"] / r["peak"] for r in rows]
    lines.append(f"\nplan / measured: {min(ratios):.3f} to {max(ratios):.3f} over {len(rows)} runs")
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
