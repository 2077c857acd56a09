"""Loss series from metrics records, and how many steps a run needs to reach a loss.

Pure functions on lists of metrics records (dicts, as read from metrics.jsonl):
training lines carry ``loss``, evaluation lines ``val_loss``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ancre.viz.run_data import is_finite_number


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


def steps_to_reach(records: Iterable[Mapping], target: float, key: str = "val_loss") -> int | None:
    """The first step at which a run's ``key`` is at or below ``target``.

    Args:
        records: Metrics records; those without a finite ``key`` (training lines, a
            skipped step's null loss) are ignored.
        target: The loss to reach.
        key: Which value to look at.

    Returns:
        The smallest step whose value is <= target, or None if the run never gets there.
    """
    for step, value in zip(*series(records, key), strict=True):
        if value <= target:
            return step
    return None


@dataclass(frozen=True)
class Comparison:
    """How many steps one run needs to reach the baseline's final validation loss.

    Attributes:
        run: The run's name.
        baseline: The baseline's name.
        target: The baseline's final val_loss.
        steps: First step at which the run reaches ``target`` (None: never).
        baseline_steps: First step at which the baseline reaches its own final val_loss.
    """

    run: str
    baseline: str
    target: float
    steps: int | None
    baseline_steps: int

    @property
    def step_ratio(self) -> float | None:
        """The ratio steps / baseline_steps, or None when the run never reaches the target."""
        if self.steps is None or self.baseline_steps <= 0:
            return None
        return self.steps / self.baseline_steps

    def describe(self) -> str:
        """One line for people, e.g. ``ancre needs 34.0% fewer steps than cascaded ...``."""
        goal = f"to reach val_loss {self.target:.4f} (the final val_loss of {self.baseline})"
        ratio = self.step_ratio
        if ratio is None:
            return f"{self.run} does not reach val_loss {self.target:.4f} ({self.baseline}'s final)"
        counts = f"({self.steps} vs {self.baseline_steps} steps)"
        if ratio < 1.0:
            how = f"{(1.0 - ratio) * 100:.1f}% fewer steps than"
        elif ratio > 1.0:
            how = f"{(ratio - 1.0) * 100:.1f}% more steps than"
        else:
            how = "as many steps as"
        return f"{self.run} needs {how} {self.baseline} {goal} {counts}"


def compare_runs(
    runs: Sequence[tuple[str, Sequence[Mapping]]], baseline: str | None = None
) -> list[Comparison]:
    """Compares every run with the baseline by the steps to reach its final val_loss.

    Args:
        runs: (name, records) of each run.
        baseline: Name of the baseline run; None takes the first run.

    Returns:
        One comparison per run other than the baseline.

    Raises:
        ValueError: The baseline is not among the runs, or has no val_loss.
    """
    names = [name for name, _ in runs]
    chosen = names[0] if baseline is None else baseline
    if chosen not in names:
        raise ValueError(f"baseline {chosen!r} is not one of the runs ({', '.join(names)})")
    base_records = runs[names.index(chosen)][1]
    target = final_value(base_records)
    if target is None:
        raise ValueError(f"baseline {chosen!r} has no val_loss record to compare against")
    base_steps = steps_to_reach(base_records, target)
    assert base_steps is not None  # the final value reaches itself
    return [
        Comparison(name, chosen, target, steps_to_reach(records, target), base_steps)
        for name, records in runs
        if name != chosen
    ]
