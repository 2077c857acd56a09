"""The sizes of the buffers ZeRO allocates per rank, set from the model, not DeepSpeed's defaults.

DeepSpeed's defaults (reduce and all-gather buckets of 5e8 elements) make every rank at
ZeRO 1-3 allocate a 2 GB fp32 gradient bucket whatever the model's size: 1.9 GB per
process of the 1.5M-parameter tiny preset, measured by ``tools/bench_plan.py``. ancre
sizes them from the hidden size D instead, as Hugging Face's DeepSpeed integration
sizes its ``auto`` values. The gradients summed are the same whatever the bucket (over
more than two processes a collective may add them in another order, the same fp32
rounding a change of world size brings). This module imports no DeepSpeed, so the planner
(``ancre.sizing``) reads the same sizes the run uses.
"""

from __future__ import annotations

from ancre.config import AncreConfig
from ancre.model.presets import PRESETS

MIN_BUCKET = 2**20
"""Fewest elements of a ZeRO bucket (a small model's buckets are not split finer)."""
MAX_LIVE_PARAMETERS = 10**9
"""DeepSpeed's ``stage3_max_live_parameters`` (kept): at ZeRO-3 a rank holds up to this
many gathered parameters, with ``stage3_max_reuse_distance`` (also 1e9) keeping the
forward's parameters gathered for the backward."""


def _hidden_size(config: AncreConfig) -> int:
    """D: the config's own, else its preset's."""
    model = config.model
    return model.hidden_size or PRESETS[model.preset].hidden_size  # type: ignore[index]


def bucket_elements(config: AncreConfig) -> int:
    """Elements of a ZeRO reduce (and all-gather) bucket: D^2, at least ``MIN_BUCKET``."""
    hidden = _hidden_size(config)
    return max(hidden * hidden, MIN_BUCKET)


def zero_buckets(config: AncreConfig) -> dict[str, int]:
    """The ``zero_optimization`` sizes of a run's DeepSpeed config, in elements.

    The reduce and all-gather buckets are :func:`bucket_elements`; ZeRO-3 prefetches up
    to 0.9 of a bucket and keeps a parameter of fewer than 10 D elements whole on every
    rank (the norms' weights, the topology).
    """
    hidden = _hidden_size(config)
    bucket = bucket_elements(config)
    return {
        "reduce_bucket_size": bucket,
        "allgather_bucket_size": bucket,
        "stage3_prefetch_bucket_size": int(0.9 * bucket),
        "stage3_param_persistence_threshold": 10 * hidden,
    }
