"""What an engine is built from: DeepSpeed's config dict, its Muon, whole ZeRO-3 parameters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import deepspeed
import torch

from ancre.config import AncreConfig
from ancre.train.optimizers import SkipsFlaggedSteps
from ancre.train.zero_buckets import zero_buckets


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
        "zero_optimization": {"stage": train.zero_stage, **zero_buckets(config)},
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


@contextlib.contextmanager
def whole_parameters(
    parameters: Sequence[torch.nn.Parameter], modifier_rank: int | None = 0
) -> Iterator[None]:
    """Makes ZeRO-3 partitioned parameters whole on every rank inside the block.

    Args:
        parameters: The parameters; those that are not partitioned are left as they are.
        modifier_rank: The rank whose values are kept when the block ends (it may write
            them); None to only read them.
    """
    partitioned = [p for p in parameters if hasattr(p, "ds_id")]
    if not partitioned:
        yield
        return
    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=modifier_rank):
        yield
