"""Everything distributed: process-group setup and the DeepSpeed engine.

This is the only module of ancre that imports deepspeed or torch.distributed.

Precision: ``train.precision: bf16`` runs DeepSpeed's ``torch_autocast`` mode. The
parameters stay fp32 (they are the master weights the optimiser updates), matrix
work runs in bf16 under autocast, and the topology logits and their softmax stay
fp32 as docs/method.md requires. DeepSpeed's ``bf16`` section is not used because it casts
every parameter, the topology logits included, to bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import math
import os
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
from deepspeed.checkpoint.ds_to_universal import main as ds_to_universal  # noqa: E402
from deepspeed.runtime.zero.utils import ZeRORuntimeException  # noqa: E402
from deepspeed.utils import logger as deepspeed_logger  # noqa: E402
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint  # noqa: E402

from ancre.checkpoint import CheckpointError  # noqa: E402
from ancre.config import AncreConfig, TopologyConfig, check_world_size  # noqa: E402
from ancre.model import FrozenWiring, Transformer, freeze_if_due  # noqa: E402
from ancre.snapshot import TopologySnapshot  # noqa: E402
from ancre.train.launcher import launcher_variables  # noqa: E402
from ancre.train.optimizers import SkipsFlaggedSteps, build_optimizer  # noqa: E402

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
"""Token ids and next-token targets of one micro-batch, (B, T) each."""


@dataclass(frozen=True)
class StepResult:
    """What one optimiser step gives back.

    Attributes:
        loss: Mean loss over the step's micro-batches, a 0-d fp64 tensor on the device
            (reading it waits for the device: read it once per metrics line).
        applied: Whether the update was applied (False: skipped for a non-finite loss or
            gradients, on every process).
        grad_norm: Global gradient norm before clipping, a float or a device tensor, or
            None where DeepSpeed does not report one.
    """

    loss: torch.Tensor
    applied: bool
    grad_norm: float | torch.Tensor | None


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


def deepspeed_config(
    config: AncreConfig, accumulation_steps: int, load_universal: bool = False
) -> dict[str, Any]:
    """The DeepSpeed config dict of a run.

    Args:
        config: The run config.
        accumulation_steps: Micro-batches per optimiser step and process.
        load_universal: The engine loads a universal checkpoint (ZeRO 1-3 only).

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
    if load_universal:
        ds["checkpoint"] = {"load_universal": True}
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
        accumulation: Micro-batches per optimiser step on each process.
    """

    def __init__(
        self,
        model: Transformer,
        config: AncreConfig,
        context: DistributedContext,
        load_universal: bool = False,
    ) -> None:
        self.context = context
        self.model = model
        self.accumulation = check_world_size(config, context.world_size)
        self._zero_stage = config.train.zero_stage
        self._grad_norm: float | None = None
        muon = functools.partial(deepspeed_muon, zero_stage=config.train.zero_stage)
        optimizer = self._client_optimizer = build_optimizer(model, config, muon)
        # every group's hyperparameters from the config, in group order
        self._hyperparameters = [
            {k: v for k, v in g.items() if k not in ("params", "lr")}
            for g in optimizer.param_groups
        ]
        self._engine, self._optimizer, _, _ = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            config=deepspeed_config(config, self.accumulation, load_universal),
        )

    def train_step(self, micro_batches: Iterator[Batch], lr_factor: float) -> StepResult:
        """One optimiser step: forward and backward over the step's micro-batches, one update.

        Draws exactly :attr:`accumulation` micro-batches from ``micro_batches``.

        Args:
            micro_batches: Inputs and next-token targets, (B, T) each, per micro-batch.
            lr_factor: Multiplier of every group's peak learning rate for this step.

        Returns:
            The step's mean loss (on the device), whether the update was applied (False:
            skipped for non-finite gradients, on every process) and the gradient norm.
        """
        for group in self._optimizer.param_groups:
            group["lr"] = group["peak_lr"] * lr_factor
        self._engine.train()
        device = self.context.device
        total = torch.zeros((), dtype=torch.float64, device=device)
        for _ in range(self.accumulation):
            inputs, targets = next(micro_batches)  # (B, T) each
            # from pinned memory (the loader's workers): no host wait
            loss = self._engine(
                inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            )
            self._engine.backward(loss)
            total += loss.detach().double()
            if self._engine.is_gradient_accumulation_boundary():
                self._before_update()
            self._engine.step()
        return StepResult(total / self.accumulation, self._engine.was_step_applied(), self._norm())

    def _before_update(self) -> None:
        """Without ZeRO, measures the gradient norm that also decides a skip.

        ZeRO optimisers record the norm and skip non-finite steps themselves; without
        ZeRO the gradients are whole here, and one norm serves both.
        """
        if self._zero_stage:
            return
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        self._grad_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        self._client_optimizer.overflow = not math.isfinite(self._grad_norm)

    def _norm(self) -> float | torch.Tensor | None:
        """Global gradient norm of the last update, before clipping, if known."""
        if self._zero_stage == 0:
            return self._grad_norm
        return self._engine.get_global_grad_norm()

    @property
    def lr(self) -> float:
        """Learning rate of the first group: the weight matrices (under muon, Muon's)."""
        return float(self._optimizer.param_groups[0]["lr"])

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
            groups = zip(self._optimizer.param_groups, self._hyperparameters, strict=True)
            for group, wanted in groups:
                if wanted["name"] == "topology":
                    group.update(peak_lr=0.0, lr=0.0)
                    wanted["peak_lr"] = 0.0
        return wiring

    def topology_snapshot(
        self, step: int, tokens: int, probe: torch.Tensor | None = None
    ) -> TopologySnapshot:
        """The current connection matrix (collective under ZeRO-3: call on every rank).

        Args:
            step: Optimiser steps taken.
            tokens: Training tokens seen.
            probe: Token ids (B, T) that an input-dependent wiring (``dynamic``) is run
                on, without gradients, to average its matrix over; ignored otherwise.

        Raises:
            ValueError: The wiring depends on the input and no probe was given.
        """
        topology = self.model.topology
        if getattr(topology, "dynamic", False):
            if probe is None:
                raise ValueError(f"the {topology.parameterisation} wiring needs a probe batch")
            self._run_probe(probe)
        with self._whole_topology():
            return topology.snapshot(step, tokens)

    @torch.no_grad()
    def _run_probe(self, tokens: torch.Tensor) -> None:
        """One forward pass that the topology records its per-token weights in."""
        self._engine.eval()
        with self.model.topology.recording():
            self._engine(tokens.to(self.context.device))

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
        self._config_hyperparameters()
        if path is None:
            raise FileNotFoundError(f"{folder}: DeepSpeed found no checkpoint to load there")

    def _config_hyperparameters(self) -> None:
        """Gives the optimiser's groups the config's hyperparameters, in group order.

        Loading brings back the saved ones (ZeRO-3's universal loader gives every group
        the first group's, name included): the config wins.
        """
        for group, wanted in zip(self._optimizer.param_groups, self._hyperparameters, strict=True):
            group.update(wanted)

    def load_universal(self, folder: Path) -> None:
        """Reads a universal checkpoint folder into ZeRO 1-3, on any number of processes.

        DeepSpeed partitions each parameter's whole fp32 weights and Adam moments for this
        world; the engine must have been built with ``load_universal=True``.
        """
        path, _ = self._engine.load_checkpoint(
            str(folder.parent), tag=folder.name, load_lr_scheduler_states=False
        )
        if path is None:
            raise FileNotFoundError(f"{folder}: DeepSpeed found no checkpoint to load there")
        # DeepSpeed 0.19's ZeRO-3 universal loader gives every group's state one shared step
        # tensor, which AdamW then advances once per group and step: each gets its own.
        for state in self._optimizer.optimizer.state.values():
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].clone()
        self._config_hyperparameters()

    def load_whole(self, tensors: Mapping[str, Mapping[str, torch.Tensor]], step: int) -> None:
        """Sets whole fp32 weights and Adam moments without ZeRO (every process holds all).

        Args:
            tensors: Parameter name -> ``fp32``, ``exp_avg``, ``exp_avg_sq`` (whole tensors).
            step: Adam's step count (its bias correction).
        """
        if self._zero_stage != 0:
            raise ValueError("whole tensors are set without ZeRO only; ZeRO 1-3 load universally")
        names = {id(p): name for name, p in self.model.named_parameters()}
        state: dict[int, dict[str, torch.Tensor]] = {}
        groups = []
        index = 0
        with torch.no_grad():
            for group in self._client_optimizer.param_groups:
                ids = []
                for param in group["params"]:
                    saved = tensors[names[id(param)]]
                    param.copy_(saved["fp32"].view_as(param))
                    state[index] = {
                        "step": torch.tensor(float(step)),
                        "exp_avg": saved["exp_avg"].view_as(param).clone(),
                        "exp_avg_sq": saved["exp_avg_sq"].view_as(param).clone(),
                    }
                    ids.append(index)
                    index += 1
                groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        self._client_optimizer.load_state_dict({"state": state, "param_groups": groups})
        self._config_hyperparameters()

    def close(self) -> None:
        """Leaves the process group."""
        self._engine.destroy()
        if dist.is_initialized():
            dist.destroy_process_group()


def engine_to_universal(engine_folder: Path, out: Path) -> None:
    """Writes DeepSpeed's universal checkpoint of a ZeRO 1-3 engine folder into ``out``.

    Needs no process group. DeepSpeed's converter gathers every parameter's fp32 weights
    and Adam moments from all partitions into one folder per parameter
    (``out/zero/<name>/fp32.pt, exp_avg.pt, exp_avg_sq.pt``). It also writes a
    ``latest_universal`` file beside ``out``, naming it.
    """
    args = argparse.Namespace(
        input_folder=str(engine_folder), output_folder=str(out), num_extract_workers=1,
        num_merge_workers=1, keep_temp_folder=False, strict=True,
        # the version tag DeepSpeed asks of clients that save for conversion; ancre's
        # checkpoints are plain data parallel, for which the tag is all there is
        inject_missing_state=True,
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ds_to_universal(args)


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
