"""The ``ancre sweep`` subcommand: print, run (locally, one after another) or emit a sweep.

A local sweep first checks what every unfinished run reads (``run.out_dir``, the model,
``model.init_from``, each distinct data section and tokenizer, the number of processes)
and starts nothing when one of them would fail. It then starts ``python -m ancre.cli
train ...`` for each run that is not finished (with ``checkpoint.resume=auto``, so an
interrupted run continues), logs it to ``<sweep>/logs/<run>.log`` and rewrites the
summary after every run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ancre.atomic import write_bytes_atomic
from ancre.config import check_world_size
from ancre.sweep.expand import Sweep, SweepError, load_sweep
from ancre.sweep.slurm import slurm_array_script
from ancre.sweep.summary import changed_settings, is_finished
from ancre.sweep.summary import write_summary as write_summary_files
from ancre.train.commands import BAD_INPUT
from ancre.train.prepare import check_data_inputs, check_run_inputs

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 1
WALL_TIMES = "wall_times.json"


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declares the arguments of ``ancre sweep``."""
    parser.add_argument("sweep", type=Path, help="the sweep YAML file")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run", action="store_true", help="print the expanded runs and their overrides"
    )
    mode.add_argument(
        "--emit", choices=("slurm",), help="write an sbatch array script instead of running"
    )
    mode.add_argument(
        "--summary", action="store_true", help="only (re)write the summary from the run folders"
    )
    parser.add_argument(
        "--procs", type=int, default=1, help="processes per local run (torchrun when more than 1)"
    )
    parser.add_argument(
        "--rerun", action="store_true",
        help="train again from scratch the runs whose folders hold other settings "
        "(run.overwrite=true for them: their earlier results are deleted)",
    )  # fmt: skip
    parser.add_argument("--nodes", type=int, default=1, help="nodes per run (--emit slurm)")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node (--emit slurm)")


def run(command: str, args: argparse.Namespace) -> int:
    """Runs ``ancre sweep``.

    Returns:
        0 when every run finished (or on --dry-run, --emit, --summary), 1 when a run
        failed, 2 for a sweep file that does not expand into valid runs.
    """
    try:
        sweep = load_sweep(args.sweep)
    except SweepError as error:
        print(f"ancre sweep: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.dry_run:
        print(describe(sweep, args.procs))
        return 0
    if args.emit == "slurm":
        path = sweep.folder / "sweep.sbatch"
        path.parent.mkdir(parents=True, exist_ok=True)
        (sweep.folder / "logs").mkdir(exist_ok=True)
        script = slurm_array_script(sweep, str(args.sweep), args.nodes, args.gpus_per_node)
        write_bytes_atomic(path, script.encode())
        path.chmod(0o755)
        print(f"wrote {path} ({len(sweep.runs)} array tasks); submit with: sbatch {path}")
        return 0
    if args.summary:
        _report(sweep)
        return 0
    changed = {run.name: changed_settings(run) for run in sweep.runs}
    changed = {name: keys for name, keys in changed.items() if keys}
    if changed and not args.rerun:
        listed = "; ".join(f"{name} ({', '.join(keys)})" for name, keys in changed.items())
        print(
            f"ancre sweep: error: {len(changed)} run folder(s) of {args.sweep} hold runs of "
            f"other settings than the sweep now gives them: {listed}. Nothing was started. "
            "Give the changed runs new names (run_name or name in the sweep file), or pass "
            "--rerun to train them again from scratch (their earlier results are deleted)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if failing := input_errors(sweep, args.procs):
        print(
            f"ancre sweep: error: {len(failing)} run(s) of {args.sweep} cannot start: "
            + "; ".join(failing) + ". Nothing was started: fix the sweep file (or what it "
            "names) and run it again",
            file=sys.stderr,
        )  # fmt: skip
        return EXIT_BAD_INPUT
    return run_locally(sweep, args.procs, rerun=set(changed))


def input_errors(sweep: Sweep, procs: int) -> list[str]:
    """What would stop each unfinished run of the sweep at its start, checked before any.

    The checks ``ancre train`` makes before it touches the disk
    (:func:`ancre.train.prepare.check_inputs`), the data section's once per distinct
    section, and the number of processes against the batch sizes.

    Returns:
        ``<run name>: <error>`` for every run that would be refused; empty when none.
    """
    failing: list[str] = []
    data_errors: dict[str, str | None] = {}
    for run in sweep.runs:
        if is_finished(run):
            continue
        config = run.config
        key = repr(config.data)
        if key not in data_errors:
            data_errors[key] = _error_of(check_data_inputs, config.data)
        error = (
            data_errors[key]
            or _error_of(check_world_size, config, procs)
            or _error_of(check_run_inputs, config)
        )
        if error is not None:
            failing.append(f"{run.name}: {error}")
    return failing


def _error_of(check: Callable[..., object], *args: object) -> str | None:
    """What ``check(*args)`` refuses, as one line, or None when it passes."""
    try:
        check(*args)
    except (*BAD_INPUT, ValueError) as error:
        return str(error)
    return None


def train_command(arguments: list[str], procs: int) -> list[str]:
    """The command that trains one run with ``procs`` local processes."""
    launcher = [sys.executable, "-m", "ancre.cli"]
    if procs > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={procs}", "-m", "ancre.cli"]  # fmt: skip
    return [*launcher, "train", *arguments]


def describe(sweep: Sweep, procs: int = 1) -> str:
    """The expanded runs, each with its folder and the command that trains it."""
    lines = [f"sweep {sweep.name}: {len(sweep.runs)} run(s) in {sweep.folder}"]
    for index, run in enumerate(sweep.runs, 1):
        values = ", ".join(f"{k}={v}" for k, v in run.values.items())
        lines.append(
            f"[{index}/{len(sweep.runs)}] {run.name}" + (f"  ({values})" if values else "")
        )
        lines.append("    " + shlex.join(train_command(run.train_args(), procs)))
    return "\n".join(lines)


def run_locally(sweep: Sweep, procs: int, rerun: set[str] = frozenset()) -> int:
    """Trains the sweep's unfinished runs one after another, then writes the summary.

    Args:
        sweep: The sweep.
        procs: Processes per run.
        rerun: Runs to train again from scratch (``run.overwrite=true``).

    Returns:
        0 when every run finished, 1 when one failed (the others still ran).
    """
    logs = sweep.folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    times_path = sweep.folder / WALL_TIMES
    wall_times = json.loads(times_path.read_text()) if times_path.exists() else {}
    failed = []
    for index, run in enumerate(sweep.runs, 1):
        prefix = f"[{index}/{len(sweep.runs)}] {run.name}"
        if is_finished(run):
            print(f"{prefix}: finished already, skipped", flush=True)
            continue
        log = logs / f"{run.name}.log"
        print(f"{prefix}: training (log: {log})", flush=True)
        began = time.monotonic()
        with log.open("a") as out:
            again = ["run.overwrite=true"] if run.name in rerun else []
            command = train_command([*run.train_args(), *again], procs)
            out.write(f"$ {shlex.join(command)}\n")
            out.flush()
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
        wall_times[run.name] = round(wall_times.get(run.name, 0.0) + time.monotonic() - began, 1)
        write_bytes_atomic(times_path, json.dumps(wall_times, indent=1).encode())
        if code != 0:
            failed.append(run.name)
            print(f"{prefix}: failed with exit code {code}; see {log}", flush=True)
        write_summary_files(sweep, wall_times)
    _report(sweep)
    if failed:
        print(f"ancre sweep: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return 0


def _report(sweep: Sweep) -> None:
    times_path = sweep.folder / WALL_TIMES
    wall_times = json.loads(times_path.read_text()) if times_path.exists() else {}
    csv_path, md_path = write_summary_files(sweep, wall_times)
    print(md_path.read_text(), end="")
    print(f"summary: {csv_path} and {md_path}")
