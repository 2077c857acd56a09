"""The model and its optimiser inside a DeepSpeed engine: one optimiser step, save, load."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist
from deepspeed.runtime.zero.utils import ZeRORuntimeException

from ancre.checkpoint import CheckpointError
from ancre.config import AncreConfig, TopologyConfig, check_world_size
from ancre.model import FrozenWiring, Transformer, freeze_due, freeze_if_due
from ancre.model.depth_stats import BlockStats, DepthRecorder, recording
from ancre.model.losses import cross_entropy, z_loss
from ancre.snapshot import TopologySnapshot
from ancre.train.engine.group import DistributedContext, any_process
from ancre.train.engine.setup import deepspeed_config, deepspeed_muon, whole_parameters
from ancre.train.optimizers import build_optimizer

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
"""Token ids and next-token targets of one micro-batch, (B, T) each."""


@dataclass(frozen=True)
class StepResult:
    """What one optimiser step gives back.

    Attributes:
        loss: Mean cross-entropy over the step's micro-batches, a 0-d fp64 tensor on the
            device (reading it waits for the device: read it once per metrics line).
        applied: Whether the update was applied (False: skipped for a non-finite loss or
            gradients, or as a loss spike, on every process).
        grad_norm: Global gradient norm before clipping, a float or a device tensor, or
            None where DeepSpeed does not report one.
        z_loss: Mean z-loss term added to the objective (``train.z_loss`` x
            mean(logsumexp^2)), a 0-d fp64 device tensor, or None without one.
        global_loss: The step's mean cross-entropy over every process, read on the host
            (only when a spike threshold is watched), else None.
        spiked: The step was skipped because ``global_loss`` was above the threshold.
    """

    loss: torch.Tensor
    applied: bool
    grad_norm: float | torch.Tensor | None
    z_loss: torch.Tensor | None = None
    global_loss: float | None = None
    spiked: bool = False


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
        self._z_loss = config.train.z_loss
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

    def train_step(
        self,
        micro_batches: Iterator[Batch],
        lr_factor: float,
        watch_spikes: bool = False,
        skip_above: float | None = None,
    ) -> StepResult:
        """One optimiser step: forward and backward over the step's micro-batches, one update.

        Draws exactly :attr:`accumulation` micro-batches from ``micro_batches``. With
        ``train.z_loss`` the objective is the cross-entropy plus its z-loss term, both
        from the logits in fp32 (``ancre.model.losses``).

        Args:
            micro_batches: Inputs and next-token targets, (B, T) each, per micro-batch.
            lr_factor: Multiplier of every group's peak learning rate for this step.
            watch_spikes: Read the step's mean loss over every process on the host
                (one all-reduce) before the last backward, for ``train.spike_factor``.
            skip_above: Skip the update when that mean is above this (a spike): the
                last backward runs on a non-finite loss, so every ZeRO stage drops the
                step as it drops a non-finite one.

        Returns:
            The step's mean loss (on the device), whether the update was applied, the
            gradient norm, the z-loss term, the global loss and whether it spiked.
        """
        for group in self._optimizer.param_groups:
            group["lr"] = group["peak_lr"] * lr_factor
        self._engine.train()
        device = self.context.device
        total = torch.zeros((), dtype=torch.float64, device=device)
        z_total = torch.zeros((), dtype=torch.float64, device=device) if self._z_loss else None
        global_loss, spiked = None, False
        for index in range(self.accumulation):
            inputs, targets = next(micro_batches)  # (B, T) each
            # from pinned memory (the loader's workers): no host wait
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if z_total is None:
                loss = self._engine(inputs, targets)
                total += loss.detach().double()
            else:
                logits = self._engine(inputs)  # (B, T, V)
                entropy = cross_entropy(logits, targets)
                term = self._z_loss * z_loss(logits, targets)
                loss = entropy + term
                total += entropy.detach().double()
                z_total += term.detach().double()
            if watch_spikes and index == self.accumulation - 1:
                mean = float(total) / self.accumulation  # a host sync, once per step
                global_loss = self.all_reduce_sum([mean])[0] / self.context.world_size
                if skip_above is not None and global_loss > skip_above:
                    spiked = True
                    loss = loss * math.nan  # non-finite gradients: the update is dropped
            self._engine.backward(loss)
            if self._engine.is_gradient_accumulation_boundary():
                self._before_update()
            self._engine.step()
        z_mean = None if z_total is None else z_total / self.accumulation
        return StepResult(
            total / self.accumulation, self._engine.was_step_applied(), self._norm(), z_mean,
            global_loss, spiked,
        )  # fmt: skip

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

    def _whole_topology(self) -> contextlib.AbstractContextManager:
        """Makes the topology parameters whole on every rank, for reading (ZeRO-3)."""
        return whole_parameters(list(self.model.topology.parameters()), modifier_rank=None)

    def freeze_topology(self, config: TopologyConfig, step: int) -> FrozenWiring | None:
        """Freezes the learned matrix once ``step`` reaches ``topology.freeze_at`` (collective).

        The topology group's learning rate becomes zero, so the optimiser moves the
        logits no more (no momentum, no weight decay); they get no gradient either.

        Returns:
            The frozen wiring when it froze now, else None.
        """
        if not freeze_due(self.model.topology, config, step):
            return None  # every step but one: no gather of the ZeRO-3 partitions
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

    @torch.no_grad()
    def block_stats(self, tokens: torch.Tensor) -> BlockStats:
        """Per-block statistics of one forward pass over ``tokens`` (collective under ZeRO-3).

        See ``ancre.model.depth_stats``; an input-dependent wiring records its per-token
        reads matrices during the same pass.
        """
        self._engine.eval()
        topology, recorder = self.model.topology, DepthRecorder()
        per_token = topology.recording() if getattr(topology, "dynamic", False) else None
        with recording(self.model, recorder), per_token or contextlib.nullcontext():
            self._engine(tokens.to(self.context.device))
        with self._whole_topology():
            return recorder.stats(topology.share_reads())

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
        """Leaves the process group.

        Through DeepSpeed, so that it forgets its groups too: a later run in the same
        process then joins a new one.
        """
        self._engine.destroy()
        if dist.is_initialized():
            deepspeed.comm.destroy_process_group()
