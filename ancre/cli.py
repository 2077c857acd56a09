"""The ``ancre`` command: one subcommand per job, each implemented in its own module.

Each subcommand's module is imported only when that subcommand runs (the table
below), so ``ancre viz`` works on a laptop without torch or DeepSpeed, and ``--help``
is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ancre.stop_signals import ignore_stop_signals
from ancre.train.preemption import release_stop_signals, stop_signals

# subcommand -> (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ancre.train.commands", "train a model from YAML configs and key=value overrides"),
    "eval": ("ancre.train.commands", "validation loss (or downstream --tasks) of a checkpoint"),
    "ablate": ("ancre.train.commands", "each connection of a trained matrix removed: its loss"),
    "convert": ("ancre.export.commands", "a checkpoint (any ZeRO stage) -> model.safetensors"),
    "generate": ("ancre.generate.commands", "text from a checkpoint or conversion (KV cache)"),
    "sweep": ("ancre.sweep.commands", "expand a sweep YAML; run it locally or emit SLURM"),
    "viz": ("ancre.viz.commands", "figures and report.html of a run's learned topology"),
    "plan": ("ancre.sizing.commands", "memory per rank and step time of a config, before launch"),
}


def _usage() -> str:
    lines = ["usage: ancre COMMAND [ARGS ...]   (ancre COMMAND --help for its arguments)", ""]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in sorted(COMMANDS.items())]
    return "\n".join(lines)


def _without_local_rank(argv: list[str]) -> list[str]:
    """Drops the --local_rank argument DeepSpeed's launcher adds (ranks come from the env)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--local_rank", "--local-rank"):
            skip = True
        elif not arg.startswith(("--local_rank=", "--local-rank=")):
            kept.append(arg)
    return kept


def _tell_launcher(code: int) -> None:
    """Writes this process's exit code where ``ancre.train.torchrun`` reads it, if it asks."""
    folder = os.environ.get("ANCRE_EXIT_DIR")
    rank = os.environ.get("RANK", "0")
    if folder and os.path.isdir(folder) and rank.isdigit():
        with open(os.path.join(folder, f"rank_{int(rank):05d}.exit"), "w") as out:
            out.write(f"{code}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ancre`` console script.

    ``ancre train`` turns stop signals into requests from its first line on. As the
    program of its process (``argv`` None) it keeps them so until the process exits, so
    a signal that arrives while a finished run shuts down is not a kill; called with
    ``argv`` from other code, it gives that code its handlers back when it returns.

    Args:
        argv: Arguments (without the program name); None reads sys.argv.

    Returns:
        The process exit code.
    """
    args = _without_local_rank(list(sys.argv[1:] if argv is None else argv))
    if not args or args[0] not in COMMANDS:
        asked = bool(args) and args[0] in ("-h", "--help")
        print(_usage(), file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    command = args[0]
    if command == "train":
        stop_signals()  # from now on a stop signal is a request, not a traceback
    try:
        module_name, summary = COMMANDS[command]
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(prog=f"ancre {command}", description=summary)
        module.add_arguments(command, parser)
        code = module.run(command, parser.parse_args(args[1:]))
        _tell_launcher(code)
        return code
    finally:
        if argv is not None:
            release_stop_signals()
        elif command == "train":
            # Late in its shutdown Python puts SIG_DFL back for every signal that has a
            # Python handler, so a stop signal then would kill a run that has finished
            # (exit -15 instead of 0 or 5). The run has nothing left to stop: ignore them.
            ignore_stop_signals()


if __name__ == "__main__":
    sys.exit(main())
