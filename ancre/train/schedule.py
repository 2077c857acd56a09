"""Learning-rate schedules as pure functions of the step and the ``train`` section.

Every schedule warms up linearly from 1/warmup to 1 over ``train.warmup_steps`` steps,
then:

- ``cosine``: a cosine decay that reaches ``min_lr_ratio`` at ``train.steps``;
- ``linear``: a straight line to ``min_lr_ratio`` at ``train.steps``;
- ``constant``: 1;
- ``wsd`` (warmup, stable, decay): 1 until the decay starts (``train.decay_from``, or
  the last ``train.decay_fraction`` of the steps), then down to ``min_lr_ratio`` at
  ``train.steps``, linearly or as 1 - sqrt(progress).

Being functions of the step, they need no state in a checkpoint; a resume that changes
``train.steps`` (an extended run) changes the later learning rates as
:func:`schedule_change` says.
"""

from __future__ import annotations

import math

from ancre.config import TrainConfig


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


def lr_factor(step: int, train: TrainConfig) -> float:
    """The multiplier of every group's peak learning rate for the optimiser step ``step``.

    Args:
        step: The optimiser step about to be taken, counted from 0.
        train: The ``train`` section (schedule, steps, warmup, decay, min_lr_ratio).

    Returns:
        A multiplier in (0, 1].
    """
    if train.schedule == "cosine":
        return warmup_cosine(step, train.steps, train.warmup_steps, train.min_lr_ratio)
    if step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    low = train.min_lr_ratio
    if train.schedule == "constant":
        return 1.0
    if train.schedule == "linear":
        start = train.warmup_steps
    else:  # wsd
        start = train.decay_start
        if step < start:
            return 1.0
    progress = min(1.0, (step - start) / max(1, train.steps - start))
    if train.schedule == "wsd" and train.decay_shape == "1-sqrt":
        return low + (1.0 - low) * (1.0 - math.sqrt(progress))
    return low + (1.0 - low) * (1.0 - progress)


def schedule_change(step: int, before: TrainConfig, after: TrainConfig) -> str | None:
    """What a resume at ``step`` does to the learning rate, said for the run's log.

    Args:
        step: The resumed run's next optimiser step.
        before: The checkpoint's ``train`` section.
        after: The resumed run's.

    Returns:
        None when every learning rate from ``step`` on is the one the checkpoint's run
        would have used; else one sentence: the schedule stretched (or changed), and the
        learning rate at ``step`` before and after.
    """
    keys = ("schedule", "steps", "warmup_steps", "min_lr_ratio", "decay_fraction",
            "decay_shape", "decay_from", "lr")  # fmt: skip
    if all(getattr(before, k) == getattr(after, k) for k in keys):
        return None
    old = before.lr * lr_factor(step, before)
    new = after.lr * lr_factor(step, after)
    only_length = all(getattr(before, k) == getattr(after, k) for k in keys if k != "steps")
    if after.schedule == "wsd" and only_length and old == new:
        what = (
            f"the wsd schedule's stable phase goes on ({before.steps} -> {after.steps} steps; "
            f"the decay now starts at step {after.decay_start})"
        )
    elif only_length:
        what = (
            f"the {after.schedule} schedule is stretched from {before.steps} to {after.steps} steps"
        )
    else:
        what = f"the learning-rate schedule changed ({before.schedule} -> {after.schedule})"
    jump = "no jump" if math.isclose(old, new, rel_tol=1e-12) else "a jump"
    return (
        f"{what}: the learning rate at step {step} is {old:.4g} as before, {new:.4g} now ({jump})"
    )
