"""The ``ancre train``, ``eval`` and ``ablate`` subcommands, and how every command ends.

:func:`reported` turns what can go wrong in a command (bad input, a stop signal, a
full disk, a lost peer) into a message and the exit code of the table below; the
other packages' commands (``ancre convert`` in :mod:`ancre.export.commands`) end the
same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from ancre.atomic import write_text_atomic
from ancre.checkpoint import CheckpointError
from ancre.config import ConfigError, load_config
from ancre.data.sources import DataError
from ancre.pretrained import ConversionError
from ancre.run_folder import RunFolderError, RunLockedError, ablation_file, checkpoint_of
from ancre.tasks import TaskError
from ancre.train.ablation import ablate_checkpoint, ablation_table
from ancre.train.launcher import lost_peer
from ancre.train.preemption import EXIT_STOPPED, StopRequested
from ancre.train.run import DiskFullError, evaluate_checkpoint, train
from ancre.train.task_eval import evaluate_tasks
from ancre.train.trainer import NonFiniteLossError
from ancre.train.write_failures import DISK_FULL

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_LOST_PEER = 4
EXIT_DISK_FULL = 6
BAD_INPUT = (
    ConfigError, CheckpointError, DataError, RunFolderError, RunLockedError, FileNotFoundError,
    FileExistsError, TaskError, ConversionError,
)  # fmt: skip


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declares the arguments of one subcommand."""
    if command == "ablate":
        parser.add_argument(
            "checkpoint", type=Path,
            help="a checkpoint folder, checkpoints/latest, a run folder (its newest) or a "
            "conversion",
        )  # fmt: skip
        parser.add_argument(
            "--tokens", type=int, default=4096,
            help="validation target tokens of each evaluation (default 4096)",
        )  # fmt: skip
        parser.add_argument("--batch-size", type=int, default=16, help="sequences per forward")
        parser.add_argument(
            "--renormalise", action="store_true",
            help="rescale the rest of a row to its old sum (default: leave it as it is)",
        )  # fmt: skip
        parser.add_argument("--json", type=Path, help="also write the result as JSON here")
        return
    if command == "train":
        parser.add_argument(
            "settings",
            nargs="+",
            metavar="CONFIG_OR_OVERRIDE",
            help="YAML files merged in order, then key=value overrides (e.g. train.steps=100)",
        )
    else:
        parser.add_argument(
            "checkpoint", type=Path,
            help="a checkpoint folder, checkpoints/latest, or a run folder (its newest)",
        )  # fmt: skip
        parser.add_argument("overrides", nargs="*", help="key=value overrides of its config")
        parser.add_argument(
            "--tasks",
            help="downstream tasks of lm-evaluation-harness instead of the validation loss "
            "(hellaswag,arc_easy,...); also reads an ancre convert folder",
        )
        parser.add_argument("--tasks-path", type=Path, help="a folder of task YAML files")
        parser.add_argument("--limit", type=int, help="at most this many documents per task")
        parser.add_argument("--batch-size", type=int, default=8, help="requests per forward")


def checkpoint_meant(command: str, path: Path) -> Path:
    """The checkpoint a typed path stands for (``ancre.run_folder.checkpoint_of``), said."""
    checkpoint = checkpoint_of(path)
    if checkpoint != path:
        print(f"ancre {command}: reading {checkpoint}", file=sys.stderr)
    return checkpoint


def run(command: str, args: argparse.Namespace) -> int:
    """Runs ``ancre train`` or ``ancre eval``, ended as :func:`reported` ends it."""
    return reported(command, lambda: _run(command, args))


def _run(command: str, args: argparse.Namespace) -> None:
    if command == "train":
        files = [item for item in args.settings if "=" not in item]
        overrides = [item for item in args.settings if "=" in item]
        train(load_config(files, overrides))
        return
    args.checkpoint = checkpoint_meant(command, args.checkpoint)
    if command == "ablate":
        if args.tokens < 1 or args.batch_size < 1:
            raise ConfigError("--tokens/--batch-size", "must be 1 or more")
        result = ablate_checkpoint(args.checkpoint, args.tokens, args.batch_size, args.renormalise)
        print(ablation_table(result))
        text = json.dumps(result, indent=1) + "\n"
        beside = ablation_file(args.checkpoint, args.renormalise)  # where ancre viz finds it
        write_text_atomic(beside, text)
        print(f"\nwritten to {beside} (ancre viz draws it)")
        if args.json is not None:
            write_text_atomic(args.json, text)
        return
    if args.tasks is not None:
        _no_overrides(args.overrides)
        print(json.dumps(evaluate_tasks(
            args.checkpoint, args.tasks, args.tasks_path, args.limit, args.batch_size
        )))  # fmt: skip
    elif (result := evaluate_checkpoint(args.checkpoint, args.overrides)) is not None:
        print(json.dumps(result))


def reported(command: str, work: Callable[[], None]) -> int:
    """Runs a command's work; what ends it early is said on stderr, with its exit code.

    Args:
        command: The subcommand, for the messages.
        work: What it does.

    Returns:
        0 on success, 2 for bad input (config, data, files, checkpoints, a run folder
        another job owns), 3 when training stopped on non-finite losses, 4 when another
        training process died or stopped answering, 5 when a stop signal ended the run
        with a checkpoint, 6 when a disk filled up.
    """
    try:
        work()
    except StopRequested as stop:
        print(f"ancre {command}: stopped: {stop.describe()}", file=sys.stderr)
        return EXIT_STOPPED
    except BAD_INPUT as error:
        print(f"ancre {command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NonFiniteLossError as error:
        print(f"ancre {command}: stopped: {error}", file=sys.stderr)
        return EXIT_NON_FINITE
    except DiskFullError as error:
        print(f"ancre {command}: stopped: {error}", file=sys.stderr)
        return EXIT_DISK_FULL
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        print(f"ancre {command}: stopped: the disk is full: {error}", file=sys.stderr)
        return EXIT_DISK_FULL
    except RuntimeError as error:
        if (peer := lost_peer(error)) is None:
            raise
        print(
            f"ancre {command}: stopped: lost a peer: {peer}. The last complete checkpoint "
            "is intact: start the same command on every node to resume",
            file=sys.stderr,
        )
        return EXIT_LOST_PEER
    return 0


def _no_overrides(overrides: list[str]) -> None:
    """Task evaluation reads the model as trained: config overrides do not apply."""
    if overrides:
        raise TaskError(
            f"--tasks takes no config overrides (got {' '.join(overrides)}); they apply to the "
            "validation loss only"
        )
