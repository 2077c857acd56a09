"""What a launcher tells a training process, and how a lost peer shows.

Pure functions over environment variables and exceptions: no process group, no
DeepSpeed. ``ancre.train.engine`` joins the group these variables describe.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import sys
from collections.abc import Mapping

LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""The variables a process group is joined from (DeepSpeed, torchrun and srun set them)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_host(nodelist: str) -> str:
    """The first host name of a SLURM node list (``gpu[03-05,9],cpu1`` -> ``gpu03``).

    Args:
        nodelist: A node list as SLURM writes it, ranges in brackets.

    Returns:
        The first host it names.
    """
    head = re.match(r"([^,\[]*)(\[([^\]]*)\])?", nodelist.strip())
    assert head is not None  # the pattern matches any string
    prefix, ranges = head.group(1), head.group(3)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def slurm_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The launcher variables of a process that ``srun`` started directly (no torchrun).

    Rank and world come from SLURM_PROCID, SLURM_LOCALID and SLURM_STEP_NUM_TASKS (or
    SLURM_NTASKS); the rendezvous host is the step's first node (where rank 0 runs),
    else SLURM_LAUNCH_NODE_IPADDR; the port is derived from SLURM_JOB_ID so every
    process of a job picks the same one. MASTER_ADDR and MASTER_PORT win when set.

    Raises:
        RuntimeError: A variable the rendezvous needs is missing; the message names it.
    """
    world = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    host = env.get("MASTER_ADDR") or (
        first_host(nodelist) if nodelist else env.get("SLURM_LAUNCH_NODE_IPADDR")
    )
    job = env.get("SLURM_JOB_ID")
    port = env.get("MASTER_PORT") or (str(15000 + int(job) % 20000) if job else None)
    missing = [
        name
        for name, value in (
            ("SLURM_NTASKS", world),
            ("SLURM_JOB_NODELIST or SLURM_LAUNCH_NODE_IPADDR", host),
            ("SLURM_JOB_ID or MASTER_PORT", port),
        )
        if not value
    ]
    if missing:
        raise RuntimeError(
            f"started by srun (SLURM_PROCID is set) but {', '.join(missing)} is not set; "
            "set MASTER_ADDR and MASTER_PORT, or start through torchrun"
        )
    return {
        "RANK": env["SLURM_PROCID"],
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": str(host),
        "MASTER_PORT": str(port),
    }


def launcher_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``env`` before joining the process group.

    A launcher's RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come first
    (nothing to add). A process that ``srun`` started directly (SLURM_PROCID set, no
    RANK) takes them from SLURM's variables. A process started with no launcher is a
    world of one on a free local port, instead of DeepSpeed's MPI discovery.

    Raises:
        RuntimeError: The launcher set only part of the variables, or srun left out one
            the rendezvous needs.
    """
    added: dict[str, str] = {}
    if "RANK" not in env and "SLURM_PROCID" in env:
        added = slurm_variables(env)
    elif "RANK" not in env and "WORLD_SIZE" not in env:
        added = {
            "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
        }  # fmt: skip
    missing = [name for name in LAUNCHER_VARIABLES if name not in env and name not in added]
    if missing:
        raise RuntimeError(
            f"the launcher set only part of the process-group variables; missing: "
            f"{', '.join(missing)}. Start with deepspeed, torchrun, srun, or no launcher at all"
        )
    return added


PR_SET_PDEATHSIG = 1
"""Linux prctl option: a signal the kernel sends this process when its parent dies."""


def stop_with_launcher(env: Mapping[str, str] = os.environ) -> bool:
    """Under torchrun, asks the kernel for SIGTERM when the launcher dies (Linux).

    A launcher killed with SIGKILL cannot forward a stop; without this its workers
    would train on as orphans and hold the run's lock. SIGTERM is a stop request, so
    the workers stop at the next step boundary with a checkpoint. Only where torchrun
    started the process (``TORCHELASTIC_RUN_ID``): the parent of a plain run is a
    shell, whose closing SIGHUP already stops it.

    Returns:
        Whether the request was made.
    """
    if "TORCHELASTIC_RUN_ID" not in env or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return False
    if os.getppid() == 1:  # the launcher died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def launcher_rank(env: Mapping[str, str] = os.environ) -> int:
    """This process's global rank as the launcher set it (0 without a launcher)."""
    value = env.get("RANK") or env.get("SLURM_PROCID") or "0"
    return int(value) if value.isdigit() else 0


# "Connection closed by peer [10.0.0.7]:41234", "Read error [10.0.0.7]:41234: ..."
_PEER_ADDRESS = re.compile(r"(?:peer|error|from) \[?([\w.:-]+?)\]?:(\d+)")


def lost_peer(error: BaseException) -> str | None:
    """Says which peer a collective lost, when ``error`` is such a failure.

    Gloo raises a plain RuntimeError naming the peer's address when its connection
    closes (the process died) and a timeout error when it stops answering; torch's
    own process-group failures derive from ``torch.distributed.DistError`` (recognised
    by its class name, so this module needs no process-group import).

    Args:
        error: An exception raised while training.

    Returns:
        A description of the lost peer (its address when the error gives it), or None
        when ``error`` is not a process-group failure.
    """
    text = str(error)
    is_dist_error = any(cls.__name__ == "DistError" for cls in type(error).__mro__)
    if not is_dist_error and not (
        isinstance(error, RuntimeError) and ("/gloo/" in text or "NCCL" in text)
    ):
        return None
    first_line = re.sub(r"^\[[^\]]*\]\s*", "", text.strip().splitlines()[0] if text else "")
    match = _PEER_ADDRESS.search(first_line)
    where = f"the process at {match.group(1)}:{match.group(2)}" if match else "a peer process"
    return f"{where} stopped answering ({first_line[:200]})"
