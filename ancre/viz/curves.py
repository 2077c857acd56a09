"""Loss series from metrics records, smoothed and interpolated: where a curve crosses a loss.

Pure functions on lists of metrics records (dicts, as read from metrics.jsonl):
training lines carry ``loss``, evaluation lines ``val_loss``. A run is only observed
at the steps it logged or evaluated, so "the step at which it reaches a loss" is read
off the curve through those points (linear between two neighbours), and always comes
with the spacing of the points it was read between: that spacing is how well it is
known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ancre.viz.run_data import is_finite_number

SMOOTHING_WINDOW = 5
"""Points of each local linear fit that smooths the training loss."""


def series(records: Iterable[Mapping], key: str) -> tuple[list[int], list[float]]:
    """The (steps, values) of every record with a finite ``key`` and a step, in step order."""
    points = sorted(
        (int(r["step"]), float(r[key]))
        for r in records
        if is_finite_number(r.get(key)) and is_finite_number(r.get("step"))
    )
    return [s for s, _ in points], [v for _, v in points]


def final_value(records: Iterable[Mapping], key: str = "val_loss") -> float | None:
    """The value of ``key`` at the last step that has one, or None."""
    steps, values = series(records, key)
    return values[-1] if values else None


def smooth(
    values: Sequence[float], window: int = SMOOTHING_WINDOW, steps: Sequence[float] | None = None
) -> list[float]:
    """Each point replaced by a straight line fitted to the ``window`` points around it.

    A local linear fit rather than a moving average: it follows a falling curve to its
    last point instead of lagging above it (a moving average would raise the final
    loss a comparison aims at). Near the ends the window shifts inwards, keeping its size.

    Args:
        values: The curve.
        window: Points per fit.
        steps: Where the points are (default: evenly spaced).

    Returns:
        The smoothed values, one per point.
    """
    xs = list(steps) if steps is not None else list(range(len(values)))
    size = min(window, len(values))
    out = []
    for k in range(len(values)):
        lo = min(max(0, k - size // 2), len(values) - size)
        x, y = xs[lo : lo + size], values[lo : lo + size]
        mx, my = sum(x) / size, sum(y) / size
        sxx = sum((a - mx) ** 2 for a in x)
        slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx if sxx else 0.0
        out.append(my + slope * (xs[k] - mx))
    return out


@dataclass(frozen=True)
class Crossing:
    """Where a curve first gets down to a loss.

    Attributes:
        step: The step, interpolated linearly between the two points around it.
        spacing: Steps between those two points (0 when the first point is already
            there): the crossing is known to within this.
    """

    step: float
    spacing: float


def first_crossing(steps: Sequence[int], values: Sequence[float], target: float) -> Crossing | None:
    """The first step at which the curve through the points is at or below ``target``.

    Args:
        steps: Steps of the points, increasing.
        values: The curve's values there.
        target: The loss to reach.

    Returns:
        The crossing, or None when no point gets there.
    """
    for k, value in enumerate(values):
        if value <= target:
            if k == 0:
                return Crossing(float(steps[0]), 0.0)
            s0, s1, v0 = steps[k - 1], steps[k], values[k - 1]
            fraction = (v0 - target) / (v0 - value) if v0 != value else 1.0
            return Crossing(s0 + fraction * (s1 - s0), float(s1 - s0))
    return None


def steps_to_reach(
    records: Iterable[Mapping], target: float, key: str = "val_loss"
) -> float | None:
    """The step at which a run's ``key`` first reaches ``target``, interpolated.

    Args:
        records: Metrics records; those without a finite ``key`` (training lines, a
            skipped step's null loss) are ignored.
        target: The loss to reach.
        key: Which value to look at.

    Returns:
        The interpolated step, or None if the run never gets there.
    """
    crossing = first_crossing(*series(records, key), target)
    return None if crossing is None else crossing.step


def median_spacing(steps: Sequence[int]) -> float:
    """The typical number of steps between two points of a curve (0 for one point)."""
    gaps = sorted(b - a for a, b in zip(steps, steps[1:], strict=False))
    return float(gaps[len(gaps) // 2]) if gaps else 0.0
