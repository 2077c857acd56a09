"""Peak memory of building a preset for ZeRO-3: whole on every process, or partitioned.

Starts one world of ``--processes`` processes (torchrun, gloo or NCCL) per way of
building, in one run: ``whole`` builds the fp32 model on every process, as a run did
before it built under ``deepspeed.zero.Init``; ``partitioned`` builds it as a ZeRO-3 run
does now (``ancre.train.engine.partitioned_construction``: each parameter partitioned as
its module is made, the weights drawn inside the same context). Each process reports its
peak resident memory (``ru_maxrss``) before and after the build; the table gives the
largest increase over the processes, and the ratio of the two ways, measured in one run.

    python tools/bench_build_memory.py --preset 1b --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MODES = ("whole", "partitioned")


def _peak_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(mode: str, preset: str, vocab_size: int, seq_len: int) -> None:
    """One rank: builds the preset the ``mode`` way and prints one JSON line."""
    import contextlib

    import torch

    from ancre.config import load_config
    from ancre.model import build_model
    from ancre.train.engine import init_distributed, partitioned_construction

    config = load_config(
        None,
        [f"model.preset={preset}", f"model.vocab_size={vocab_size}", f"data.seq_len={seq_len}",
         "train.zero_stage=3", "topology.kind=ancre", "train.precision=fp32"],
    )  # fmt: skip
    context = init_distributed(600)
    before = _peak_mb()
    started = time.perf_counter()
    torch.manual_seed(config.run.seed)
    partitioned = mode == "partitioned"
    with partitioned_construction(config) if partitioned else contextlib.nullcontext():
        model = build_model(config, vocab_size)
    seconds = time.perf_counter() - started
    # what this process holds of the weights: its partitions (ds_tensor), or everything
    held = sum(getattr(p, "ds_tensor", p).numel() * p.element_size() for p in model.parameters())
    record = {"mode": mode, "rank": context.rank, "before_mb": before, "peak_mb": _peak_mb(),
              "held_mb": held / 1e6, "parameters": model.num_parameters(),
              "seconds": seconds}  # fmt: skip
    print("BUILD " + json.dumps(record), flush=True)


def measure(mode: str, args: argparse.Namespace) -> list[dict]:
    """Runs one world for ``mode``; returns every rank's record."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={args.processes}", str(Path(__file__).resolve()), "--worker", mode,
        "--preset", args.preset, "--vocab-size", str(args.vocab_size),
        "--seq-len", str(args.seq_len),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if result.returncode != 0:
        raise SystemExit(f"the {mode} build failed:\n{result.stderr[-3000:]}")
    marked = [line for line in result.stdout.splitlines() if line.startswith("BUILD ")]
    return [json.loads(line.removeprefix("BUILD ")) for line in marked]


def main() -> None:
    """Measures both ways of building (or, with --worker, is one rank of one)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="1b")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.preset, args.vocab_size, args.seq_len)
        return
    increase = {}
    print(
        f"preset {args.preset}, ZeRO-3, {args.processes} process(es), fp32 weights; peak "
        "resident memory (ru_maxrss) of the process whose build added the most"
    )
    print(f"  {'build':<12} {'params':>8} {'held MB':>9} {'peak MB':>9} {'+ MB':>9} {'s':>6}")
    for mode in MODES:
        ranks = measure(mode, args)
        worst = max(ranks, key=lambda r: r["peak_mb"] - r["before_mb"])
        increase[mode] = worst["peak_mb"] - worst["before_mb"]
        print(
            f"  {mode:<12} {worst['parameters'] / 1e9:7.2f}B {worst['held_mb']:9.0f} "
            f"{worst['peak_mb']:9.0f} {increase[mode]:9.0f} {worst['seconds']:6.1f}"
        )
    ratio = increase["partitioned"] / increase["whole"]
    print(f"  partitioned / whole peak increase: {ratio:.2f} (largest over the processes)")


if __name__ == "__main__":
    main()
