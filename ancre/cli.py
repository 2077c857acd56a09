"""The ``ancre`` command: ``train``, ``eval`` and ``convert``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ancre.checkpoint import CheckpointError
from ancre.config import ConfigError, load_config
from ancre.convert import convert_checkpoint
from ancre.train.run import evaluate_checkpoint, train
from ancre.train.trainer import NonFiniteLossError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ancre", description="Pretrain Llama models with a learnable residual topology."
    )
    # DeepSpeed's launcher passes --local_rank; the rank is read from the environment.
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train a model from YAML configs")
    train_cmd.add_argument(
        "settings",
        nargs="+",
        metavar="CONFIG_OR_OVERRIDE",
        help="YAML files merged in order, then key=value overrides (e.g. train.steps=100)",
    )
    convert_cmd = commands.add_parser(
        "convert", help="a checkpoint (any ZeRO stage) -> model.safetensors + config"
    )
    convert_cmd.add_argument("checkpoint", type=Path, help="a checkpoint folder")
    convert_cmd.add_argument("out_dir", type=Path, help="folder to write")
    convert_cmd.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    eval_cmd = commands.add_parser("eval", help="validation loss of a checkpoint")
    eval_cmd.add_argument("checkpoint", type=Path, help="a checkpoint folder")
    eval_cmd.add_argument("overrides", nargs="*", help="key=value overrides of its config")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ancre`` console script.

    Args:
        argv: Arguments (without the program name); None reads sys.argv.

    Returns:
        The process exit code.
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            files = [item for item in args.settings if "=" not in item]
            overrides = [item for item in args.settings if "=" in item]
            train(load_config(files, overrides))
        elif args.command == "convert":
            print(convert_checkpoint(args.checkpoint, args.out_dir, args.dtype))
        elif (result := evaluate_checkpoint(args.checkpoint, args.overrides)) is not None:
            print(json.dumps(result))
    except (ConfigError, CheckpointError, FileNotFoundError, FileExistsError) as error:
        print(f"ancre {args.command}: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"ancre {args.command}: stopped: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
