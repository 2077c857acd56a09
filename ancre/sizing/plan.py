"""Will a run fit, and how long will a step take: the plan of ``ancre plan``, before launch.

The model is built on the meta device (no memory, exact parameter counts for every
preset up to 7b); its bytes per rank come from ``ancre.sizing.memory``, its FLOPs from
``ancre.train.flops`` (6 N + 12 L D T per token) and the topology mix's memory-traffic
bound from ``ancre.kernels.traffic``. A device's step time is the step's FLOPs at a
stated MFU, a model, not a measurement: the first steps of the real run
(``metrics.jsonl``: ``mfu``) say what the device reaches.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

import torch

from ancre.config import AncreConfig
from ancre.kernels.traffic import HBM_BYTES_PER_S, grouped_traffic
from ancre.model import Transformer, build_model, resolve_shape, whole_numel
from ancre.sizing.memory import Activations, ModelStates, activations, mix_name, model_states
from ancre.train.flops import PEAK_BF16_FLOPS, shape_flops_per_token
from ancre.train.optimizers import is_muon_matrix
from ancre.train.speedups import recomputed_blocks
from ancre.train.zero_buckets import bucket_elements

GIB = 2**30
STATIC_MIX_KINDS = ("ancre", "uniform", "fixed", "denseformer")
"""Kinds whose mix is a static matrix over stored states (the fused mix's traffic)."""
HEADROOM = 0.9
"""Share of a device's memory a plan lets a rank use (the allocator's fragmentation,
the CUDA context, communication buffers take the rest)."""


@dataclass(frozen=True)
class Device:
    """What a plan needs of a device kind.

    Attributes:
        name: As printed.
        memory: Bytes of device memory (host memory for the CPU).
        peak_flops: Dense bf16 FLOP/s (None: not known, no time is estimated).
        bandwidth: Memory bytes per second (None: not known).
    """

    name: str
    memory: int
    peak_flops: float | None
    bandwidth: float | None


def host_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


DEVICES = {
    key: Device(f"{key.upper()} SXM {gb} GB", gb * 10**9, PEAK_BF16_FLOPS[key.upper()],
                HBM_BYTES_PER_S[key.upper()])
    for key, gb in (("a100", 80), ("h100", 80), ("h200", 141))
}  # fmt: skip
"""The GPUs a plan knows (the nominal dense bf16 peaks of ``ancre.train.flops``, the HBM
bandwidths of ``ancre.kernels.traffic``); ``cpu`` is this machine (:func:`device`)."""


def local_device_key() -> str | None:
    """This process's device as a ``--gpu`` choice.

    Returns:
        ``cpu`` without CUDA, a known GPU's key, or None for a GPU the plan does not know.
    """
    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name().upper()
    return next((key for key in DEVICES if key.upper() in name), None)


def device(key: str, ranks: int = 1) -> Device:
    """The device of a ``--gpu`` choice: a known GPU, or ``cpu`` (this machine).

    The ranks of a CPU run share this machine's memory: each gets its share.
    """
    if key == "cpu":
        name = "this machine's CPU (host memory" + (
            f", shared by {ranks} processes)" if ranks > 1 else ")"
        )  # fmt: skip
        return Device(name, host_memory() // ranks, None, None)
    return DEVICES[key]


@dataclass(frozen=True)
class SizePlan:
    """The plan of one config on ``ranks`` devices of one kind.

    Attributes:
        config: The config planned (with the batch split it implies).
        vocab_size: The tokenizer's vocabulary size.
        device_key: The ``--gpu`` choice: ``a100``, ``h100``, ``h200`` or ``cpu``.
        device: The device kind.
        ranks: Processes (one per device).
        counts: The model's parameters and Muon's matrix parameters.
        states: One rank's model states.
        acts: One micro-batch's activations on a rank.
        flops_per_token: Training FLOPs per token.
        tokens_per_step: Tokens of one optimiser step over all ranks.
        mix_bound_s: The mix's memory-traffic bound per step on a rank (None: no static
            mix, or the bandwidth is not known).
    """

    config: AncreConfig
    vocab_size: int
    device_key: str
    device: Device
    ranks: int
    counts: tuple[int, int]
    states: ModelStates
    acts: Activations
    flops_per_token: float
    tokens_per_step: int
    mix_bound_s: float | None

    @property
    def num_params(self) -> int:
        """Parameters of the model."""
        return self.counts[0]

    @property
    def computing(self) -> int:
        """One rank's bytes in the backward: model states, activations, loss transient."""
        return self.states.computing + self.acts.kept + self.acts.transient

    @property
    def peak(self) -> int:
        """One rank's peak: the backward's bytes or the optimiser step's, the larger."""
        return max(self.computing, self.states.stepping)

    @property
    def fits(self) -> bool:
        """Whether the peak fits in the device's memory with headroom."""
        return self.peak <= HEADROOM * self.device.memory

    def step_seconds(self, mfu: float) -> float | None:
        """Seconds per optimiser step at a model FLOPs utilisation (None: no peak known)."""
        if self.device.peak_flops is None:
            return None
        flops = self.flops_per_token * self.tokens_per_step
        return flops / (self.ranks * self.device.peak_flops * mfu)


def _counts(model: Transformer) -> tuple[int, int]:
    """(parameters, Muon's matrix parameters)."""
    total = sum(whole_numel(p) for p in model.parameters())
    matrices = sum(whole_numel(p) for n, p in model.named_parameters() if is_muon_matrix(n, p))
    return total, matrices


def size_plan(
    config: AncreConfig,
    vocab_size: int,
    ranks: int,
    device_key: str,
    model: Transformer | None = None,
) -> SizePlan:
    """Plans a config on ``ranks`` devices of kind ``device_key``.

    Args:
        config: A validated config.
        vocab_size: The tokenizer's vocabulary size.
        ranks: Processes, one per device.
        device_key: ``a100``, ``h100``, ``h200`` or ``cpu``.
        model: The model built from ``config`` (a run has it); None builds it on the
            meta device.

    Returns:
        The plan.
    """
    if model is None:
        quiet = logging.getLogger(build_model.__module__)
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # the run being planned says what it builds
        try:
            with torch.device("meta"):
                model = build_model(config, vocab_size)
        finally:
            quiet.setLevel(level)
    return _plan(config, vocab_size, ranks, device_key, _counts(model))


def _plan(
    config: AncreConfig, vocab_size: int, ranks: int, device_key: str, counts: tuple[int, int]
) -> SizePlan:
    """:func:`size_plan` from the model's parameter counts (:func:`_counts`)."""
    num_params, matrices = counts
    shape = resolve_shape(config.model, vocab_size, config.data.seq_len)
    train = config.train
    tokens = train.micro_batch_size * config.data.seq_len
    states = model_states(
        num_params, train.zero_stage, ranks, train.optimizer, matrices, bucket_elements(config)
    )  # fmt: skip
    acts = activations(
        tokens, shape.hidden_size, shape.intermediate_size, shape.num_heads, shape.num_layers,
        shape.vocab_size, mix_name(config.topology.kind, config.topology.fractions),
        train.precision,
        len(recomputed_blocks(train, shape.num_layers)), (shape.laurel, shape.laurel_rank),
        shape.num_kv_heads * shape.head_dim if shape.value_residual else 0,
    )  # fmt: skip
    kit = device(device_key, ranks)
    bound = None
    if config.topology.kind in STATIC_MIX_KINDS and kit.bandwidth is not None:
        element = 2 if train.precision == "bf16" else 4
        traffic, _ = grouped_traffic(shape.num_layers, tokens, shape.hidden_size, element)
        micro_steps = max(1, train.global_batch_size // (train.micro_batch_size * ranks))
        bound = traffic.total * micro_steps / kit.bandwidth
    return SizePlan(
        config=config, vocab_size=vocab_size, device_key=device_key, device=kit, ranks=ranks,
        counts=counts, states=states, acts=acts,
        flops_per_token=shape_flops_per_token(shape, config.data.seq_len),
        tokens_per_step=train.global_batch_size * config.data.seq_len, mix_bound_s=bound,
    )  # fmt: skip


def alternatives(plan: SizePlan) -> list[tuple[str, SizePlan]]:
    """Changes that make a plan that does not fit fit, cheapest first.

    Tried, one at a time and then together: a higher ZeRO stage, recomputing every
    block, halving the micro-batch (the global batch kept), more devices. The model's
    parameter counts do not change, so no trial builds it again.
    """
    config, found = plan.config, []

    def trial(label: str, train_changes: dict, ranks: int = plan.ranks) -> bool:
        changed = replace(config, train=replace(config.train, **train_changes))
        tried = _plan(changed, plan.vocab_size, ranks, plan.device_key, plan.counts)
        if tried.fits:
            found.append((label, tried))
        return tried.fits

    for stage in range(config.train.zero_stage + 1, 4):
        trial(f"train.zero_stage={stage}", {"zero_stage": stage})
    if config.train.recompute != "blocks":
        trial("train.recompute=blocks", {"recompute": "blocks"})
        trial("train.zero_stage=3 train.recompute=blocks", {"zero_stage": 3, "recompute": "blocks"})
    micro = config.train.micro_batch_size // 2
    while micro >= 1 and not trial(
        f"train.micro_batch_size={micro} train.zero_stage=3 train.recompute=blocks",
        {"micro_batch_size": micro, "zero_stage": 3, "recompute": "blocks"},
    ):
        micro //= 2
    if not found:
        changes = {"zero_stage": 3, "recompute": "blocks", "micro_batch_size": 1}
        for ranks in (plan.ranks * 2, plan.ranks * 4, plan.ranks * 8):
            if trial(f"{ranks} devices, micro-batch 1, ZeRO 3, recompute blocks", changes, ranks):
                break
    return found
