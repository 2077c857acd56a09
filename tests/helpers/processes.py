"""Running an ``ancre`` command inside the test process, as a subprocess would see it.

A training run in a subprocess pays the torch and DeepSpeed import (seconds on two
cores) before its first step; here it pays nothing. What the command could change in
this process is set for it and put back afterwards: the environment, the working
folder, torch's thread count and random state, the logging handlers and the signal
handlers (``ancre.cli.main`` gives those back itself). Its stdout and stderr are
captured, and an exception that escapes is printed as Python would print it, with
exit code 1.

Several ranks run as :func:`run_ranks` starts them: a real gloo world of processes that
fork from a server which imported torch and DeepSpeed once. Subprocesses stay for what
needs its own process tree: a signal, a kill, a launcher script, a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator

import deepspeed
import torch
import torch.distributed as dist

from ancre.cli import main
from ancre.train.launcher import free_port


@contextlib.contextmanager
def process_state(env: dict[str, str], cwd: str | os.PathLike | None) -> Iterator[None]:
    """Gives a command ``env`` and ``cwd``, and puts back what it may change."""
    environ, folder = dict(os.environ), os.getcwd()
    threads, rng, py_rng = torch.get_num_threads(), torch.get_rng_state(), random.getstate()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        if dist.is_initialized():  # a command that failed before it left the group
            deepspeed.comm.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(folder)
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)
        random.setstate(py_rng)
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def run_in_process(
    args: list[str], env: dict[str, str], cwd: str | os.PathLike | None = None
) -> subprocess.CompletedProcess:
    """``ancre ARGS`` through :func:`ancre.cli.main` in this process.

    Args:
        args: The command line after ``ancre``.
        env: The environment the command sees (os.environ while it runs).
        cwd: Its working folder (None: this one).

    Returns:
        What ``subprocess.run(..., capture_output=True, text=True)`` would return.
    """
    with process_state(env, cwd), captured_output() as (out, err):
        try:
            code = main(args)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except Exception:  # what an uncaught exception does to a process
            traceback.print_exc()
            code = 1
    with out, err:
        return subprocess.CompletedProcess(["ancre", *args], code, out.read(), err.read())


@contextlib.contextmanager
def captured_output() -> Iterator[tuple[io.TextIOBase, io.TextIOBase]]:
    """Captures file descriptors 1 and 2, as a subprocess's pipes would.

    Python's streams, C code and the processes a command forks or spawns (a data
    loader's workers) all write there, so what a subprocess would print is all kept.
    The two files are rewound for reading when the block ends.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    streams, saved = (sys.stdout, sys.stderr), (os.dup(1), os.dup(2))
    files = (tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace"),
             tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace"))  # fmt: skip
    try:
        for fd, file in zip((1, 2), files, strict=True):
            os.dup2(file.fileno(), fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (closed below)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        yield files
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            if stream not in streams:
                stream.close()
        sys.stdout, sys.stderr = streams
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        for file in files:
            file.seek(0)


# --- several processes: a gloo world of processes forked from a preloaded server ---

PRELOADED = [
    "torch", "torch._dynamo", "deepspeed", "ancre.cli", "ancre.train.commands", "ancre.train.run",
]  # fmt: skip
"""What the fork server imports once, so that each rank starts in milliseconds, not seconds
(torch's optimisers import ``torch._dynamo`` when the first is built: a second each)."""


def _rank_main(args: list[str], env: dict[str, str], log: str) -> None:
    """A rank's process: ``ancre ARGS`` with ``env``, stdout and stderr into ``log``."""
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (1, 2):  # what C code prints too
        os.dup2(fd, stream)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (until os._exit)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    code = 1
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(bool(exit_.code))
    except Exception:  # what an uncaught exception does to a process
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_ranks(
    args: list[str], env: dict[str, str], processes: int, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``ancre ARGS`` on ``processes`` ranks of one machine, as torchrun would start them.

    Each rank is a process of its own (a real gloo world), forked from a server that has
    imported torch, DeepSpeed and ancre once. The ranks get torchrun's variables; when
    one fails the others are ended, as torchrun ends them.

    Args:
        args: The command line after ``ancre``.
        env: The environment of every rank (the rank variables are added).
        processes: How many ranks.
        timeout: Seconds the ranks may take together.

    Returns:
        Exit code 0 when every rank exited 0, else the first failing rank's code; stderr
        holds every rank's output, rank by rank (stdout: rank 0's).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    world = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
             "WORLD_SIZE": str(processes), "LOCAL_WORLD_SIZE": str(processes)}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ranks-") as folder:
        logs = [os.path.join(folder, f"rank_{rank}.log") for rank in range(processes)]
        ranks = []
        for rank, log in enumerate(logs):
            rank_env = {**env, **world, "RANK": str(rank), "LOCAL_RANK": str(rank)}
            ranks.append(context.Process(target=_rank_main, args=(args, rank_env, log)))
            ranks[-1].start()
        codes = _wait(ranks, timeout)
        texts = [open(log).read() if os.path.exists(log) else "" for log in logs]
    failed = [code for code in codes if code != 0]
    stderr = "".join(f"[rank {rank}]\n{text}" for rank, text in enumerate(texts))
    return subprocess.CompletedProcess(["ancre", *args], failed[0] if failed else 0,
                                       texts[0], stderr)  # fmt: skip


def _wait(ranks: list, timeout: float) -> list[int]:
    """Exit codes of ``ranks``; once one fails (or time is up), the rest are terminated."""
    deadline = time.monotonic() + timeout
    while any(rank.is_alive() for rank in ranks):
        failed = any(rank.exitcode not in (None, 0) for rank in ranks)
        if failed or time.monotonic() > deadline:
            time.sleep(0 if time.monotonic() > deadline else 5)  # torchrun's grace
            for rank in ranks:
                if rank.is_alive():
                    rank.terminate()
            for rank in ranks:
                rank.join(30)
            break
        time.sleep(0.05)
    return [rank.exitcode if rank.exitcode is not None else -9 for rank in ranks]
