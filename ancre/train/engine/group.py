"""The process group: joining the one a launcher describes, and the collectives ancre uses."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import deepspeed
import torch
import torch.distributed as dist
from deepspeed.accelerator import get_accelerator
from deepspeed.utils import logger as deepspeed_logger
from torch.utils.cpp_extension import get_default_build_root

from ancre.train.launcher import launcher_variables

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the training processes.

    Attributes:
        rank: Global rank.
        local_rank: Rank on this machine.
        world_size: Number of processes.
        device: The device this process computes on.
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that writes shared files (rank 0)."""
        return self.rank == 0


def describe_device(context: DistributedContext) -> str:
    """A line for the log: the device, and on a CPU how to use a GPU instead."""
    if context.device.type == "cuda":
        return f"device: {context.device} ({torch.cuda.get_device_name(context.device)})"
    return (
        "device: CPU (no CUDA GPU found: on a machine with one, a torch build with CUDA and "
        "the same command use it; pip install 'ancre[gpu]' adds the fused kernels)"
    )


def init_distributed(timeout_s: int = 300) -> DistributedContext:
    """Joins the process group that a launcher (DeepSpeed, torchrun, srun) describes.

    The variables come from the launcher, from SLURM, or make a world of one
    (:func:`ancre.train.launcher.launcher_variables`); they are set in os.environ,
    where DeepSpeed reads them.

    Args:
        timeout_s: Seconds a collective waits for the other processes before it fails
            (``train.dist_timeout_s``), so a lost peer ends the run instead of hanging it.

    Returns:
        This process's place in the world.
    """
    os.environ.update(launcher_variables(os.environ))
    deepspeed_logger.setLevel(logging.WARNING)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "gloo" and not _shm_op_is_built():
        logger.info(
            "building DeepSpeed's CPU communication op (once per machine; about a minute on "
            "two cores; cached in %s)", get_default_build_root(),
        )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # DeepSpeed prints "built successfully"
        deepspeed.init_distributed(
            dist_backend=backend, auto_mpi_discovery=False, timeout=timedelta(seconds=timeout_s)
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistributedContext(dist.get_rank(), local_rank, dist.get_world_size(), device)


def _shm_op_is_built() -> bool:
    """Whether DeepSpeed's CPU shared-memory op is in the torch extensions cache."""
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    return any(root.glob("*/deepspeed_shm_comm/*.so")) or any(root.glob("deepspeed_shm_comm/*.so"))


def build_cpu_comm_op() -> bool:
    """Builds DeepSpeed's CPU communication op for this environment, unless it is current.

    What the first CPU run would build (about 40 s on two cores); the set-up script
    calls it, so that the first run, or the first test, does not. The op in the torch
    extensions cache is rebuilt when it was built for another environment (another
    virtual environment's headers), which its mere presence does not tell.

    Returns:
        Whether it was built now (False: it was current).
    """
    before = _shm_op_mtimes()
    with contextlib.redirect_stdout(io.StringIO()):
        get_accelerator().create_op_builder("ShareMemCommBuilder").load(verbose=False)
    return _shm_op_mtimes() != before


def _shm_op_mtimes() -> dict[Path, float]:
    """When each built copy of the op in the extensions cache was written."""
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    found = [*root.glob("*/deepspeed_shm_comm/*.so"), *root.glob("deepspeed_shm_comm/*.so")]
    return {path: path.stat().st_mtime for path in found}


def barrier() -> None:
    """Waits until every process of the group gets here."""
    dist.barrier()


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process when ``flag`` is true on at least one (collective)."""
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def broadcast_from_main(value: Any) -> Any:
    """Every process gets the main process's ``value`` (any picklable object)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
