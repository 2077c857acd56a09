"""Comparing runs without misleading: steps to reach a loss, seeds, and unfair differences.

The headline number is how many steps a run needs to reach the baseline's final loss.
It is read off the curves themselves (:mod:`ancre.viz.curves`), and always says which
curve and how finely it was sampled:

- the validation loss when it was evaluated often enough to place the crossings
  (the points around each crossing are at most :data:`COARSE` of its step apart);
- otherwise the training loss, smoothed by local linear fits, when it was logged more
  often; the target is then the baseline's final smoothed training loss.

Runs of the same setting with different ``run.seed`` are grouped: each setting is
reported as mean and spread (sample standard deviation) over its seeds, and a
difference smaller than the spreads together is called so. Runs whose configs differ
in more than the compared keys (``topology.*`` unless told otherwise) are named with
the keys that differ, so that an unfair comparison is never silent.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ancre.viz.curves import (
    SMOOTHING_WINDOW,
    Crossing,
    first_crossing,
    median_spacing,
    series,
    smooth,
)

COARSE = 0.25
"""Largest spacing of the points around a crossing, as a fraction of its step, at which
the validation curve places the crossing well enough."""
NEUTRAL_KEYS = (
    "run.name", "run.out_dir", "run.overwrite", "checkpoint.", "logging.", "eval.every",
    "train.log_every", "train.dist_timeout_s", "train.cpu_threads", "train.max_bad_steps",
    "data.num_workers", "topology.backend", "model.attention", "train.compile",
    "train.recompute", "train.recompute_every_k", "train.peak_flops",
)  # fmt: skip
"""Keys (or prefixes) that do not change what a run computes: never a reason to warn."""


@dataclass(frozen=True)
class Curve:
    """Which loss a comparison reads.

    Attributes:
        key: The metrics key (``val_loss`` or ``loss``).
        label: How the text names it.
        smoothed: Whether the points are smoothed first.
    """

    key: str
    label: str
    smoothed: bool = False

    def points(self, records: Sequence[Mapping]) -> tuple[list[int], list[float]]:
        """The curve's (steps, values) for one run."""
        steps, values = series(records, self.key)
        return steps, smooth(values, steps=steps) if self.smoothed else values


VALIDATION = Curve("val_loss", "val_loss")
TRAINING = Curve(
    "loss",
    f"training loss (smoothed: local linear fits over {SMOOTHING_WINDOW} logged points)",
    True,
)


def _pct(ratio: float) -> str:
    if ratio < 1.0:
        return f"{(1.0 - ratio) * 100:.1f}% fewer steps than"
    if ratio > 1.0:
        return f"{(ratio - 1.0) * 100:.1f}% more steps than"
    return "as many steps as"


@dataclass(frozen=True)
class Comparison:
    """How many steps one run needs to reach the baseline's final loss.

    Attributes:
        run: The run's name.
        baseline: The baseline's name.
        curve: The loss both are read on.
        target: The baseline's final value of that loss.
        reached: Where the run's curve first reaches ``target`` (None: never).
        baseline_reached: Where the baseline's own curve first reaches it.
        why: Why this curve was used (empty for the validation loss read finely enough).
    """

    run: str
    baseline: str
    curve: Curve
    target: float
    reached: Crossing | None
    baseline_reached: Crossing
    why: str = ""

    @property
    def steps(self) -> float | None:
        """The run's interpolated step at the target (None: never reached)."""
        return None if self.reached is None else self.reached.step

    @property
    def baseline_steps(self) -> float:
        """The baseline's interpolated step at its own final value."""
        return self.baseline_reached.step

    @property
    def step_ratio(self) -> float | None:
        """The ratio steps / baseline_steps; None when the run never reaches the target."""
        if self.reached is None or self.baseline_steps <= 0:
            return None
        return self.reached.step / self.baseline_steps

    @property
    def spacing(self) -> float:
        """The larger spacing of the points the two crossings were read between."""
        spacings = [self.baseline_reached.spacing]
        if self.reached is not None:
            spacings.append(self.reached.spacing)
        return max(spacings)

    def describe(self) -> str:
        """One line for people, with how the number was obtained."""
        goal = f"{self.baseline}'s final {self.curve.label}, {self.target:.4f}"
        if self.reached is None or (ratio := self.step_ratio) is None:
            return f"{self.run} does not reach {goal}"
        how = (
            f"read off the curves between points at most {self.spacing:.0f} steps apart"
            if self.spacing
            else "at a logged point"
        )
        text = (
            f"{self.run} needs {_pct(ratio)} {self.baseline} to reach {goal}: step "
            f"~{self.reached.step:.0f} against ~{self.baseline_reached.step:.0f} ({how})"
        )
        return f"{text}; {self.why}" if self.why else text


def choose_curve(runs: Sequence[tuple[str, Sequence[Mapping]]], baseline: str) -> tuple[Curve, str]:
    """The validation loss, unless its points are too far apart to place the crossings.

    Returns:
        The curve, and why the training loss was chosen (empty for the validation loss).

    Raises:
        ValueError: The baseline has no validation loss and no training loss.
    """
    records = dict(runs)
    base = records[baseline]
    target = _final(base, VALIDATION)
    if target is None:
        if _final(base, TRAINING) is None:
            raise ValueError(f"baseline {baseline!r} has no val_loss record to compare against")
        return TRAINING, f"{baseline} has no val_loss"
    coarse = []
    for name, run in runs:
        crossing = first_crossing(*VALIDATION.points(run), target)
        if crossing is not None and crossing.spacing > COARSE * max(crossing.step, 1.0):
            coarse.append((name, crossing))
    if not coarse:
        return VALIDATION, ""
    val_spacing = max(median_spacing(VALIDATION.points(run)[0]) for _, run in runs)
    train_spacing = max(median_spacing(TRAINING.points(run)[0]) for _, run in runs)
    name, crossing = coarse[0]
    if not 0 < train_spacing < val_spacing:
        return VALIDATION, (
            f"the validation points around {name}'s crossing are {crossing.spacing:.0f} steps "
            f"apart, so the step is uncertain by that much; evaluate more often (eval.every)"
        )
    return TRAINING, (
        f"val_loss was evaluated every {val_spacing:.0f} steps, too sparse to place "
        f"{name}'s crossing (between points {crossing.spacing:.0f} steps apart around step "
        f"~{crossing.step:.0f}), so the training loss, logged every {train_spacing:.0f} "
        "steps, was used"
    )


def _final(records: Sequence[Mapping], curve: Curve) -> float | None:
    values = curve.points(records)[1]
    return values[-1] if values else None


def compare_runs(
    runs: Sequence[tuple[str, Sequence[Mapping]]], baseline: str | None = None
) -> list[Comparison]:
    """Compares every run with the baseline by the steps to reach its final loss.

    Args:
        runs: (name, records) of each run.
        baseline: Name of the baseline run; None takes the first run.

    Returns:
        One comparison per run other than the baseline.

    Raises:
        ValueError: The baseline is not among the runs, or has no loss at all.
    """
    names = [name for name, _ in runs]
    chosen = names[0] if baseline is None else baseline
    if chosen not in names:
        raise ValueError(f"baseline {chosen!r} is not one of the runs ({', '.join(names)})")
    curve, why = choose_curve(runs, chosen)
    base_points = curve.points(runs[names.index(chosen)][1])
    target = base_points[1][-1]
    base_reached = first_crossing(*base_points, target)
    assert base_reached is not None  # the final value reaches itself
    return [
        Comparison(
            name, chosen, curve, target, first_crossing(*curve.points(r), target), base_reached, why
        )  # fmt: skip
        for name, r in runs
        if name != chosen
    ]


@dataclass(frozen=True)
class Spread:
    """A quantity over seeds: mean, sample standard deviation and count."""

    mean: float
    sd: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of a few values (sd 0 for one)."""
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), sd, len(values))

    def text(self, digits: int = 4) -> str:
        """``0.6740 ± 0.0070 (3 seeds)``."""
        seeds = f"{self.count} seed{'s' if self.count != 1 else ''}"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} ({seeds})"


def within_spread(a: Spread, b: Spread) -> bool:
    """Whether two means differ by less than the two spreads together."""
    return abs(a.mean - b.mean) <= a.sd + b.sd


def compare_settings(
    settings: Mapping[str, Sequence[Sequence[Mapping]]], baseline: str
) -> list[str]:
    """Mean and spread over seeds of each setting against the baseline setting.

    Args:
        settings: Setting name -> the records of each of its runs (one per seed).
        baseline: The baseline setting.

    Returns:
        One line per other setting: final val_loss and steps to the baseline's mean
        final val_loss, each as mean ± sd over seeds, and whether the difference is
        within the spread.
    """
    base_runs = settings[baseline]
    base_finals = [v for r in base_runs if (v := _final(r, VALIDATION)) is not None]
    if not base_finals:
        return [f"{baseline} has no val_loss: no comparison over seeds"]
    base_final = Spread.of(base_finals)
    target = base_final.mean

    def steps(runs: Sequence[Sequence[Mapping]]) -> tuple[Spread | None, int]:
        reached = [c.step for r in runs if (c := first_crossing(*VALIDATION.points(r), target))]
        return (Spread.of(reached) if reached else None), len(runs) - len(reached)

    base_steps, _ = steps(base_runs)
    lines = []
    for name, runs in settings.items():
        if name == baseline:
            continue
        finals = [v for r in runs if (v := _final(r, VALIDATION)) is not None]
        if not finals:
            lines.append(f"{name}: no val_loss")
            continue
        final = Spread.of(finals)
        verdict = (
            "within the spread of the seeds"
            if within_spread(final, base_final)
            else "larger than the spread of the seeds"
        )
        line = (
            f"{name}: final val_loss {final.text()} against {baseline} {base_final.text()}; "
            f"the difference ({final.mean - base_final.mean:+.4f}) is {verdict}"
        )
        run_steps, missed = steps(runs)
        if run_steps is not None and base_steps is not None:
            line += (
                f". Steps to {baseline}'s mean final val_loss: {run_steps.text(0)} against "
                f"{base_steps.text(0)}"
            )
        if missed:
            line += f" ({missed} seed(s) never reach it)"
        if 1 in (final.count, base_final.count):
            line += "; one seed has no spread: run more seeds before concluding"
        lines.append(line)
    return lines


def differing_keys(
    configs: Mapping[str, Mapping[str, object] | None], compared: Sequence[str] = ("topology.",)
) -> list[str]:
    """The settings that differ between runs beyond the compared keys.

    Args:
        configs: Run name -> its config as dotted keys (None: unknown).
        compared: Keys or prefixes the comparison is about (they may differ).

    Returns:
        ``key: run=value, other=value`` for every other key that differs, apart from
        ``run.seed`` and keys that do not change what a run computes.
    """
    known = {name: config for name, config in configs.items() if config is not None}
    keys = sorted({k for config in known.values() for k in config})
    ignored = (*NEUTRAL_KEYS, "run.seed", *compared)
    lines = []
    for key in keys:
        if key.startswith(ignored) or key in ignored:
            continue
        values = {name: config.get(key) for name, config in known.items()}
        if len({repr(v) for v in values.values()}) > 1:
            lines.append(f"{key}: " + ", ".join(f"{n}={v!r}" for n, v in values.items()))
    return lines


def setting_key(config: Mapping[str, object] | None, name: str) -> str:
    """What identifies a run's setting: its config without the seed and neutral keys."""
    if config is None:
        return f"run:{name}"
    ignored = (*NEUTRAL_KEYS, "run.seed")
    kept = sorted((k, repr(v)) for k, v in config.items() if not k.startswith(ignored))
    return repr(kept)
