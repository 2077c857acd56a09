"""Everything distributed: process-group setup and the DeepSpeed engine.

This is the only module of ancre that imports deepspeed or torch.distributed.

Precision: ``train.precision: bf16`` runs DeepSpeed's ``torch_autocast`` mode. The
parameters stay fp32 (they are the master weights the optimiser updates), matrix
work runs in bf16 under autocast, and the topology logits and their softmax stay
fp32 as docs/method.md requires. DeepSpeed's ``bf16`` section is not used because it casts
every parameter, the topology logits included, to bf16.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import re
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch.utils.cpp_extension import get_default_build_root

if not torch.cuda.is_available():
    # DeepSpeed picks its accelerator when imported; without a GPU it must be the CPU.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")

import deepspeed  # noqa: E402
import torch.distributed as dist  # noqa: E402
from deepspeed.runtime.zero.utils import ZeRORuntimeException  # noqa: E402
from deepspeed.utils import logger as deepspeed_logger  # noqa: E402
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint  # noqa: E402

from ancre.checkpoint import CheckpointError  # noqa: E402
from ancre.config import AncreConfig, TopologyConfig  # noqa: E402
from ancre.model import FrozenWiring, Transformer, freeze_if_due  # noqa: E402
from ancre.snapshot import TopologySnapshot  # noqa: E402
from ancre.train.optimizers import SkipsFlaggedSteps, build_optimizer  # noqa: E402

logger = logging.getLogger(__name__)

LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


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


def _free_port() -> int:
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


def _slurm_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The launcher variables of a process that ``srun`` started directly (no torchrun).

    Rank and world come from SLURM_PROCID, SLURM_LOCALID and SLURM_STEP_NUM_TASKS (or
    SLURM_NTASKS); the rendezvous host is the step's first node (where rank 0 runs),
    else SLURM_LAUNCH_NODE_IPADDR; the port is derived from SLURM_JOB_ID so every
    process of a job picks the same one. MASTER_ADDR and MASTER_PORT win when set.
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


def launcher_rank() -> int:
    """This process's global rank as the launcher set it (0 without a launcher)."""
    value = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or "0"
    return int(value) if value.isdigit() else 0


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

    A launcher's RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come
    first. A process that ``srun`` started directly (SLURM_PROCID set, no RANK) takes
    them from SLURM's variables. A process started with no launcher is a world of
    one: the variables DeepSpeed needs are set here (a free local port), instead of
    DeepSpeed's MPI discovery.

    Args:
        timeout_s: Seconds a collective waits for the other processes before it fails
            (``train.dist_timeout_s``), so a lost peer ends the run instead of hanging it.

    Returns:
        This process's place in the world.
    """
    if "RANK" not in os.environ and "SLURM_PROCID" in os.environ:
        os.environ.update(_slurm_variables(os.environ))
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        os.environ.update(
            RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(_free_port()),
        )  # fmt: skip
    missing = [name for name in LAUNCHER_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"the launcher set only part of the process-group variables; missing: "
            f"{', '.join(missing)}. Start with deepspeed, torchrun, srun, or no launcher at all"
        )
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


# "Connection closed by peer [10.0.0.7]:41234", "Read error [10.0.0.7]:41234: ..."
_PEER_ADDRESS = re.compile(r"(?:peer|error|from) \[?([\w.:-]+?)\]?:(\d+)")


def lost_peer(error: BaseException) -> str | None:
    """Says which peer a collective lost, when ``error`` is such a failure.

    Gloo raises a plain RuntimeError naming the peer's address when its connection
    closes (the process died) and a timeout error when it stops answering; torch's
    own process-group failures are ``torch.distributed.DistError`` subclasses.

    Args:
        error: An exception raised while training.

    Returns:
        A description of the lost peer (its address when the error gives it), or None
        when ``error`` is not a process-group failure.
    """
    text = str(error)
    if not isinstance(error, dist.DistError) and not (
        isinstance(error, RuntimeError) and ("/gloo/" in text or "NCCL" in text)
    ):
        return None
    first_line = re.sub(r"^\[[^\]]*\]\s*", "", text.strip().splitlines()[0] if text else "")
    match = _PEER_ADDRESS.search(first_line)
    where = f"the process at {match.group(1)}:{match.group(2)}" if match else "a peer process"
    return f"{where} stopped answering ({first_line[:200]})"


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


def deepspeed_config(config: AncreConfig, accumulation_steps: int) -> dict[str, Any]:
    """The DeepSpeed config dict of a run.

    Args:
        config: The run config.
        accumulation_steps: Micro-batches per optimiser step and process.

    Returns:
        The dict for ``deepspeed.initialize``.
    """
    train = config.train
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": accumulation_steps,
        "gradient_clipping": train.grad_clip,
        "zero_optimization": {"stage": train.zero_stage},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if train.precision == "bf16":
        ds["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    if train.optimizer == "adam_atan2":
        ds["zero_allow_untested_optimizer"] = True  # elementwise: right on ZeRO partitions
    if train.optimizer == "muon" and train.zero_stage == 3:
        ds["zero_optimization"]["reduce_scatter"] = False  # ZeRO-3 Muon needs whole gradients
    return ds


def deepspeed_muon(groups: list[dict[str, Any]], zero_stage: int) -> torch.optim.Optimizer:
    """DeepSpeed's Muon (with its AdamW for the groups not tagged ``use_muon``).

    Without ZeRO it skips the steps the engine flags as non-finite; ZeRO 1-3 need the
    stock class (they orthogonalise whole matrices before partitioning the update).
    Imported here, when a run asks for Muon: the import loads torch._dynamo (seconds).
    """
    from deepspeed.runtime.zero.muon.muon_optimizer import MuonWithAuxAdam

    if zero_stage:
        return MuonWithAuxAdam(groups)

    class FiniteMuon(SkipsFlaggedSteps, MuonWithAuxAdam):
        """DeepSpeed's Muon that skips flagged steps."""

    return FiniteMuon(groups)


class Engine:
    """The model and its optimiser inside a DeepSpeed engine.

    Attributes:
        context: This process's place in the world.
        model: The single-device model the engine wraps.
    """

    def __init__(
        self,
        model: Transformer,
        config: AncreConfig,
        context: DistributedContext,
        accumulation_steps: int,
    ) -> None:
        self.context = context
        self.model = model
        self._zero_stage = config.train.zero_stage
        self._grad_norm: float | None = None
        muon = functools.partial(deepspeed_muon, zero_stage=config.train.zero_stage)
        optimizer = self._client_optimizer = build_optimizer(model, config, muon)
        self._hyperparameters = {
            g["name"]: {k: v for k, v in g.items() if k not in ("params", "lr")}
            for g in optimizer.param_groups
        }
        self._engine, self._optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=deepspeed_config(config, accumulation_steps)
        )

    def forward_backward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One micro-batch: forward, loss, backward (gradients accumulate).

        Args:
            inputs: Token ids (B, T).
            targets: Next-token ids (B, T).

        Returns:
            The micro-batch's mean loss, detached.
        """
        self._engine.train()
        device = self.context.device  # from pinned memory (the loader's workers): no host wait
        loss = self._engine(
            inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        )
        self._engine.backward(loss)
        return loss.detach()

    def step(self, lr_factor: float) -> bool | None:
        """Ends a micro-batch; on the last one of a step, updates the weights.

        Args:
            lr_factor: Multiplier of every group's peak learning rate for this step.

        Returns:
            None before the last micro-batch of a step; then whether the update was
            applied (False: skipped for non-finite gradients, on every process).
        """
        boundary = self._engine.is_gradient_accumulation_boundary()
        for group in self._optimizer.param_groups:
            group["lr"] = group["peak_lr"] * lr_factor
        if self._zero_stage == 0 and boundary:
            # ZeRO optimisers record the norm and skip non-finite steps themselves;
            # without ZeRO the gradients are whole here, and one norm serves both.
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            self._grad_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
            self._client_optimizer.overflow = not math.isfinite(self._grad_norm)
        self._engine.step()
        return self._engine.was_step_applied() if boundary else None

    @property
    def lr(self) -> float:
        """Learning rate of the first group: the weight matrices (under muon, Muon's)."""
        return float(self._optimizer.param_groups[0]["lr"])

    def grad_norm(self) -> float | None:
        """Global gradient norm of the last optimiser step, before clipping, if known."""
        if self._zero_stage == 0:
            return self._grad_norm
        norm = self._engine.get_global_grad_norm()
        return None if norm is None else float(norm)

    @torch.no_grad()
    def loss_sum(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """Summed cross-entropy of a batch, without gradients (for evaluation)."""
        self._engine.eval()
        device = self.context.device
        loss = self._engine(inputs.to(device), targets.to(device), reduction="sum")
        return float(loss)

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Sums a few numbers over all processes (fp64, so sums are exact enough)."""
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.context.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def any_process(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on at least one (collective)."""
        return any_process(flag, self.context.device)

    @contextlib.contextmanager
    def _whole_topology(self) -> Iterator[None]:
        """Makes the topology parameters whole on every rank (ZeRO-3 partitions them)."""
        params = list(self.model.topology.parameters())
        if params and hasattr(params[0], "ds_id"):
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                yield
        else:
            yield

    def freeze_topology(self, config: TopologyConfig, step: int) -> FrozenWiring | None:
        """Freezes the learned matrix once ``step`` reaches ``topology.freeze_at`` (collective).

        The topology group's learning rate becomes zero, so the optimiser moves the
        logits no more (no momentum, no weight decay); they get no gradient either.

        Returns:
            The frozen wiring when it froze now, else None.
        """
        with self._whole_topology():
            wiring = freeze_if_due(self.model.topology, config, step)
        if wiring is not None:
            for group in self._optimizer.param_groups:
                if group["name"] == "topology":
                    group.update(peak_lr=0.0, lr=0.0)
            if "topology" in self._hyperparameters:
                self._hyperparameters["topology"]["peak_lr"] = 0.0
        return wiring

    def topology_snapshot(self, step: int, tokens: int) -> TopologySnapshot:
        """The current connection matrix (collective under ZeRO-3: call on every rank)."""
        with self._whole_topology():
            return self.model.topology.snapshot(step, tokens)

    def save(self, folder: Path) -> None:
        """Writes DeepSpeed's model and optimiser state into ``folder`` (collective).

        DeepSpeed also writes its own ``latest`` file beside ``folder``, naming it: its
        ZeRO-3 weights-only loader looks for that file and ignores the tag.
        """
        self._engine.save_checkpoint(str(folder.parent), tag=folder.name, save_latest=True)

    def load(self, folder: Path, weights_only: bool = False) -> None:
        """Reads the state written by :meth:`save` (collective).

        Args:
            folder: The engine folder of a checkpoint.
            weights_only: Load the model weights and leave the optimiser as it is.
        """
        try:
            path, _ = self._engine.load_checkpoint(
                str(folder.parent),
                tag=folder.name,
                load_optimizer_states=not weights_only,
                load_lr_scheduler_states=False,
                load_module_only=weights_only,
            )
        except ZeRORuntimeException as error:
            raise CheckpointError(f"{folder}: {error}") from None
        # The optimiser's groups come back with the saved hyperparameters; the config wins.
        for group in self._optimizer.param_groups:
            group.update(self._hyperparameters[group["name"]])
        if path is None:
            raise FileNotFoundError(f"{folder}: DeepSpeed found no checkpoint to load there")

    def close(self) -> None:
        """Leaves the process group."""
        self._engine.destroy()
        if dist.is_initialized():
            dist.destroy_process_group()


def consolidated_weights(engine_folder: Path, zero_stage: int) -> dict[str, torch.Tensor]:
    """The full fp32 weights of a checkpoint's engine/ folder, from any ZeRO stage.

    Needs no process group. Without ZeRO the weights are read from the model file
    (tensors only, nothing else unpickled); with ZeRO 1-3 they are gathered from the
    fp32 master partitions of every process by DeepSpeed's own reader.

    Args:
        engine_folder: ``<checkpoint>/engine``.
        zero_stage: The ZeRO stage the checkpoint was written with.

    Returns:
        Parameter name -> fp32 tensor, as in the model's state_dict.
    """
    if zero_stage == 0:
        states = torch.load(
            engine_folder / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True
        )
        return {k: v.float() for k, v in states["module"].items()}
    state = get_fp32_state_dict_from_zero_checkpoint(
        str(engine_folder.parent), tag=engine_folder.name
    )
    return dict(state)
