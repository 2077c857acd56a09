"""Building a model with its parameters partitioned as they are made (ZeRO-3).

At ZeRO-3 every parameter is partitioned over the processes as soon as its module is
built (``deepspeed.zero.Init``), so no process ever holds the whole fp32 model: a
process's peak is its share plus the largest module. The weights are drawn by
:meth:`ancre.model.Transformer.init_weights` inside the same context, where DeepSpeed
gathers each module's parameters around ``Module.apply``: the draws are the same, in the
same order, as when the model is built whole on one device, so a run's weights do not
depend on the ZeRO stage. Weights written into a partitioned model afterwards
(``model.init_from``) go through ``setup.whole_parameters``.
"""

from __future__ import annotations

import contextlib

import deepspeed

from ancre.config import AncreConfig
from ancre.train.engine.setup import deepspeed_config


def partitioned_construction(config: AncreConfig) -> contextlib.AbstractContextManager:
    """The context a run builds its model in: ``deepspeed.zero.Init`` at ZeRO-3, else none."""
    if config.train.zero_stage != 3:
        return contextlib.nullcontext()
    # fp32 master weights: the dtype follows the config, which enables neither fp16 nor
    # bf16 (autocast). An explicit dtype=float32 is not honoured where the accelerator
    # has no fp16 (DeepSpeed 0.19 takes bf16 on the CPU then).
    return deepspeed.zero.Init(config_dict_or_path=deepspeed_config(config, 1))
