"""Learning-rate schedules as pure functions of the step."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """The multiplier of the peak learning rate for the optimiser step ``step``.

    Linear warmup from 1/warmup to 1 over the first ``warmup_steps`` steps, then a
    cosine decay that reaches ``min_ratio`` at ``total_steps``.

    Args:
        step: The optimiser step about to be taken, counted from 0.
        total_steps: Steps of the whole run.
        warmup_steps: Steps of linear warmup.
        min_ratio: Multiplier at the end of the decay.

    Returns:
        A multiplier in (0, 1].
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
