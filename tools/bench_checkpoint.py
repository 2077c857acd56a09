"""Checkpoint save and load time and size for a preset, through the real DeepSpeed engine.

Builds the model in one process (no launcher), takes one training step so the
optimiser has state, then times what a run does: DeepSpeed's save, the ranks'
state and the manifest with its sha256 of every file (``publish``), and a full load
(weights and optimiser); then the safetensors conversion. Prints seconds and MB.
``--universal`` also times making the checkpoint's universal form (what a resume on
another number of processes or ZeRO stage makes once, ``ancre.train.universal``) and the
disk it adds beside the checkpoint.

    python tools/bench_checkpoint.py --preset tiny
    python tools/bench_checkpoint.py --preset 60m --zero-stage 2 --universal
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from ancre.checkpoint import CheckpointFolder, TrainerState
from ancre.config import load_config
from ancre.data.tokenizer import train_tokenizer
from ancre.export.conversion import convert_checkpoint
from ancre.model import build_model
from ancre.run_folder import RunFolder
from ancre.train.engine import Engine, init_distributed
from ancre.train.rng import rng_state
from ancre.train.threads import apply_cpu_threads
from ancre.train.universal import folder_bytes, make_universal, verify_universal


def size_mb(folder: Path) -> float:
    """Total size of the files under a folder, in MB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    """Parses the arguments, saves, loads, converts and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--zero-stage", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument(
        "--universal", action="store_true", help="also make the universal form (resharding)"
    )
    args = parser.parse_args()

    context = init_distributed()
    if (threads := apply_cpu_threads(0, context.device)) is not None:
        print(threads)
    overrides = [
        f"model.preset={args.preset}", f"train.zero_stage={args.zero_stage}",
        "train.precision=fp32", "train.micro_batch_size=1", "train.global_batch_size=1",
        f"data.seq_len={args.seq_len}", "train.steps=1", "train.warmup_steps=0",
    ]  # fmt: skip
    config = load_config(None, overrides)
    torch.manual_seed(0)
    model = build_model(config, args.vocab_size)
    engine = Engine(model, config, context)
    tokens = torch.randint(0, args.vocab_size, (1, args.seq_len + 1))
    engine.train_step(iter([(tokens[:, :-1], tokens[:, 1:])]), 1.0)

    with tempfile.TemporaryDirectory() as tmp:
        run = RunFolder(Path(tmp))
        tokenizer = train_tokenizer(
            ["a small text to make a tokenizer"] * 50, run.root / "t.model", 300
        )
        checkpoint = CheckpointFolder(run.checkpoint_folder(1))
        folder = checkpoint.path
        times = {}
        started = time.perf_counter()
        engine.save(checkpoint.engine)
        times["deepspeed save"] = time.perf_counter() - started
        started = time.perf_counter()
        checkpoint.write_rank_state(0, {}, rng_state())
        snapshot = engine.topology_snapshot(1, 0)
        checkpoint.complete(TrainerState(1, 0, 1), config, snapshot, tokenizer.path)
        run.publish(folder)
        times["publish (manifest)"] = time.perf_counter() - started
        started = time.perf_counter()
        checkpoint.verify()
        times["verify (sha256)"] = time.perf_counter() - started
        started = time.perf_counter()
        engine.load(checkpoint.engine)
        times["deepspeed load"] = time.perf_counter() - started
        started = time.perf_counter()
        convert_checkpoint(folder, run.root / "converted")
        times["convert (safetensors)"] = time.perf_counter() - started
        checkpoint_mb = size_mb(folder)
        added = None
        if args.universal:
            before = folder_bytes(folder)
            started = time.perf_counter()
            make_universal(checkpoint, args.zero_stage, model, config)
            times["universal form"] = time.perf_counter() - started
            started = time.perf_counter()
            verify_universal(checkpoint)
            times["universal verify"] = time.perf_counter() - started
            added = (folder_bytes(folder) - before) / 1e6
        print(
            f"preset {args.preset}: {model.num_parameters() / 1e6:.1f}M parameters, "
            f"ZeRO {args.zero_stage}, fp32 weights + AdamW state"
        )
        for name, seconds in times.items():
            print(f"  {name:<22} {seconds:7.2f} s")
        print(f"  checkpoint size        {checkpoint_mb:7.1f} MB")
        print(f"  converted size         {size_mb(run.root / 'converted'):7.1f} MB")
        if added is not None:
            total = folder_bytes(checkpoint.universal) / 1e6
            print(f"  universal form         {total:7.1f} MB ({added:.1f} MB added on disk)")
    engine.close()


if __name__ == "__main__":
    main()
