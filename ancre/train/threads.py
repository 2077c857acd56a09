"""CPU threads that fit the machine: one share of the free cores per training process.

torch starts one intra-op thread per core in every process. Two processes on two
cores, or one beside other work, then fight over the cores and train several times
slower than with fewer threads (the losses are the same). On a CPU a run therefore
chooses its threads, in this order:

1. ``OMP_NUM_THREADS`` when it is set (torch reads it; torchrun sets it to 1 when it
   starts several processes);
2. ``train.cpu_threads`` when it is above 0;
3. the cores this process may run on (its affinity mask) divided by the training
   processes on this node, and no more than the cores that are idle when the run
   starts (measured over a fraction of a second from /proc/stat).

The choice and the reason are logged. On a GPU nothing is changed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch

LOCAL_PROCESS_VARIABLES = ("LOCAL_WORLD_SIZE", "LOCAL_SIZE", "SLURM_NTASKS_PER_NODE")
"""Where launchers say how many processes run on this node (torchrun, DeepSpeed, SLURM)."""
IDLE_PROBE_S = 0.25
"""How long the idle cores are measured for."""


@dataclass(frozen=True)
class ThreadChoice:
    """How many intra-op threads a process uses, and why.

    Attributes:
        threads: The thread count, or None to keep torch's (``OMP_NUM_THREADS`` set).
        reason: For the log.
    """

    threads: int | None
    reason: str


def affinity_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def idle_cores(probe_s: float = IDLE_PROBE_S) -> float | None:
    """Cores left idle by every process of the machine, or None where /proc/stat is missing."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait

    try:
        total_a, idle_a = sample()
        time.sleep(probe_s)
        total_b, idle_b = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total_b <= total_a:
        return None
    return (idle_b - idle_a) / (total_b - total_a) * (os.cpu_count() or 1)


def choose_threads(
    setting: int, env: Mapping[str, str], local_processes: int, idle: float | None
) -> ThreadChoice:
    """Applies the rule of this module.

    Args:
        setting: ``train.cpu_threads`` (0: choose).
        env: The environment (``OMP_NUM_THREADS``).
        local_processes: Training processes on this node.
        idle: Idle cores of the machine now (None: unknown).

    Returns:
        The choice and its reason.
    """
    if env.get("OMP_NUM_THREADS"):
        return ThreadChoice(None, f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']} from the environment")
    if setting > 0:
        return ThreadChoice(setting, f"train.cpu_threads={setting}")
    cores = affinity_cores()
    share = max(1, cores // max(1, local_processes))
    reason = f"{cores} core(s) in the affinity mask / {local_processes} process(es) on this node"
    if idle is not None and round(idle) < share:
        share = max(1, round(idle))
        reason += f", {idle:.1f} idle (other work is running)"
    return ThreadChoice(share, reason)


def local_processes(env: Mapping[str, str]) -> int:
    """Training processes on this node, as the launcher says (1 without a launcher)."""
    for name in LOCAL_PROCESS_VARIABLES:
        value = env.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def apply_cpu_threads(setting: int, device: torch.device) -> str | None:
    """Sets this process's intra-op threads by the rule of this module (CPU only).

    Args:
        setting: ``train.cpu_threads``.
        device: The process's device; nothing changes on a GPU.

    Returns:
        A line for the log, or None on a GPU.
    """
    if device.type != "cpu":
        return None
    env = os.environ
    probe = not env.get("OMP_NUM_THREADS") and setting <= 0
    choice = choose_threads(setting, env, local_processes(env), idle_cores() if probe else None)
    if choice.threads is not None:
        torch.set_num_threads(choice.threads)
    return f"CPU threads per process: {torch.get_num_threads()} ({choice.reason})"
