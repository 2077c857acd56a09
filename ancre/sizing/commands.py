"""``ancre plan``: the memory and time plan of a config, before anything is launched."""

from __future__ import annotations

import argparse
import sys

from ancre.config import AncreConfig, ConfigError, load_config
from ancre.data.shards import DataError
from ancre.data.tokenizer import Tokenizer
from ancre.sizing.plan import DEVICES, alternatives, size_plan
from ancre.sizing.report import plan_lines

EXIT_DOES_NOT_FIT = 1
EXIT_BAD_INPUT = 2


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declares the arguments of ``ancre plan``."""
    parser.add_argument(
        "settings", nargs="+", metavar="CONFIG_OR_OVERRIDE",
        help="YAML files merged in order, then key=value overrides (as ancre train takes them)",
    )  # fmt: skip
    parser.add_argument("--gpus", type=int, default=1, help="devices (ranks) in all; default 1")
    parser.add_argument(
        "--gpu", choices=[*DEVICES, "cpu"], default="h100",
        help="the device kind (cpu: this machine's memory, no time estimate); default h100",
    )  # fmt: skip
    parser.add_argument(
        "--vocab-size", type=int,
        help="the tokenizer's vocabulary size, when its file is not on this machine",
    )  # fmt: skip


def vocab_size(config: AncreConfig, given: int | None) -> int:
    """The vocabulary the run will have.

    ``--vocab-size``, else model.vocab_size, else its tokenizer file's, else the size of
    the tokenizer the run will train (data.tokenizer_vocab_size).

    Raises:
        DataError: data.tokenizer names a file that is not here (and no size is given).
    """
    if given is not None:
        return given
    if config.model.vocab_size is not None:
        return config.model.vocab_size
    if config.data.tokenizer is None:
        return config.data.tokenizer_vocab_size
    try:
        return Tokenizer(config.data.tokenizer).vocab_size
    except FileNotFoundError:
        raise DataError(
            f"data.tokenizer={config.data.tokenizer!r} is not on this machine; give its "
            "vocabulary size with --vocab-size (32000 for t5-base's spiece.model)"
        ) from None


def run(command: str, args: argparse.Namespace) -> int:
    """Prints the plan; exit 0 when it fits, 1 when it does not, 2 for bad input."""
    try:
        if args.gpus < 1:
            raise ConfigError("--gpus", f"is {args.gpus}; give the number of devices, 1 or more")
        if args.vocab_size is not None and args.vocab_size < 1:
            raise ConfigError("--vocab-size", f"is {args.vocab_size}; give a positive size")
        files = [item for item in args.settings if "=" not in item]
        overrides = [item for item in args.settings if "=" in item]
        config = load_config(files, overrides)
        vocab = vocab_size(config, args.vocab_size)
    except (ConfigError, DataError, FileNotFoundError) as error:
        print(f"ancre {command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    plan = size_plan(config, vocab, args.gpus, args.gpu)
    print("\n".join(plan_lines(plan, [] if plan.fits else alternatives(plan))))
    return 0 if plan.fits else EXIT_DOES_NOT_FIT
