"""Building a model with its parameters partitioned as they are made (ZeRO-3).

At ZeRO-3 every parameter is partitioned over the processes as soon as its module is
built (``deepspeed.zero.Init``), so no process ever holds the whole fp32 model: a
process's peak is its share plus the largest module. The weights are drawn by
:meth:`ancre.model.Transformer.init_weights` inside the same context, where DeepSpeed
gathers each module's parameters around ``Module.apply``: the draws are the same, in the
same order, as when the model is built whole on one device, so a run's weights do not
depend on the ZeRO stage.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import deepspeed
import torch

from ancre.config import AncreConfig
from ancre.train.engine.deepspeed_engine import deepspeed_config


def partitioned_construction(config: AncreConfig) -> contextlib.AbstractContextManager:
    """The context a run builds its model in: ``deepspeed.zero.Init`` at ZeRO-3, else none."""
    if config.train.zero_stage != 3:
        return contextlib.nullcontext()
    # fp32 master weights: the dtype follows the config, which enables neither fp16 nor
    # bf16 (autocast). An explicit dtype=float32 is not honoured where the accelerator
    # has no fp16 (DeepSpeed 0.19 takes bf16 on the CPU then).
    return deepspeed.zero.Init(config_dict_or_path=deepspeed_config(config, 1))


@contextlib.contextmanager
def whole_parameters(parameters: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Makes ZeRO-3 partitioned parameters whole for writing; rank 0's values are kept.

    Parameters that are not partitioned are left as they are.
    """
    partitioned = [p for p in parameters if hasattr(p, "ds_id")]
    if not partitioned:
        yield
        return
    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0):
        yield
