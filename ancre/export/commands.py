"""The ``ancre convert`` subcommand: a trained model, out of its run, in either format."""

from __future__ import annotations

import argparse
from pathlib import Path

from ancre.export.conversion import convert_checkpoint
from ancre.export.hf import export_hf
from ancre.train.commands import checkpoint_meant, reported


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declares the arguments of ``ancre convert``."""
    parser.add_argument(
        "checkpoint", type=Path,
        help="a checkpoint folder, checkpoints/latest, or a run folder (its newest)",
    )  # fmt: skip
    parser.add_argument("out_dir", type=Path, help="folder to write")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument(
        "--format",
        choices=("ancre", "hf"),
        default="ancre",
        help="ancre: model.safetensors for ancre.load_pretrained; hf: a folder that "
        "transformers loads (docs/export.md)",
    )


def run(command: str, args: argparse.Namespace) -> int:
    """Writes the conversion and prints the path written; ends as ``reported`` ends it."""

    def work() -> None:
        checkpoint = checkpoint_meant(command, args.checkpoint)
        write = export_hf if args.format == "hf" else convert_checkpoint
        print(write(checkpoint, args.out_dir, args.dtype))

    return reported(command, work)
