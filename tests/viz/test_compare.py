"""Tests for ancre/viz/compare.py: numbers that do not mislead."""

import math

import pytest

from ancre.viz.compare import (
    TRAINING,
    VALIDATION,
    compare_runs,
    compare_settings,
    differing_keys,
    setting_key,
)


def val(step, value):
    return {"step": step, "tokens": step * 10, "val_loss": value}


def curve(rate, steps, every, log_every=10, start=7.0, floor=3.0):
    """Training lines every log_every steps and evaluations every ``every`` steps."""
    records = []
    for step in range(0, steps + 1, log_every):
        loss = floor + (start - floor) * math.exp(-rate * step)
        if step:
            records.append({"step": step, "loss": loss})
        if step % every == 0:
            records.append(val(step, loss + 0.05))
    return records


def test_compare_runs_step_ratio_interpolated():
    baseline = [val(0, 7.0), val(50, 4.0), val(100, 3.0)]
    better = [val(0, 7.0), val(50, 3.5), val(60, 3.1), val(70, 2.9), val(100, 2.5)]
    worse = [val(0, 7.0), val(100, 3.5)]
    (b, w) = compare_runs([("cascaded", baseline), ("ancre", better), ("slow", worse)])
    assert (b.run, b.baseline, b.target, b.baseline_steps) == ("ancre", "cascaded", 3.0, 100)
    assert b.steps == pytest.approx(65.0) and b.curve == VALIDATION
    assert b.step_ratio == pytest.approx(0.65)
    assert "35.0% fewer steps than cascaded" in b.describe()
    assert "between points at most 50 steps apart" in b.describe()
    assert w.steps is None and w.step_ratio is None and "does not reach" in w.describe()


def test_sparse_evaluations_fall_back_to_the_smoothed_training_loss_and_say_so():
    # the quickstart case: ancre evaluated every 50 of 200 steps against a 60-step baseline
    ancre = curve(rate=0.05, steps=200, every=50)
    cascaded = curve(rate=0.03, steps=60, every=30)
    (c,) = compare_runs([("ancre", ancre), ("cascaded", cascaded)], baseline="cascaded")
    assert c.curve == TRAINING
    assert "too sparse" in c.describe() and "training loss" in c.describe()
    assert c.spacing <= 10
    # read on the smoothed training curves, the crossing is where that curve meets the target
    steps, values = TRAINING.points(ancre)
    k = next(i for i, v in enumerate(values) if v <= c.target)
    assert steps[k - 1] <= c.steps <= steps[k]


def test_settings_report_mean_and_spread_and_whether_it_matters():
    close_a = [curve(0.05, 100, 10, floor=3.0 + d) for d in (0.0, 0.05, -0.05)]
    close_b = [curve(0.05, 100, 10, floor=3.02 + d) for d in (0.04, -0.05, 0.0)]
    far = [curve(0.05, 100, 10, floor=2.0 + d) for d in (0.0, 0.01, -0.01)]
    (line,) = compare_settings({"a": close_a, "b": close_b}, baseline="a")
    assert "± " in line and "(3 seeds)" in line and "within the spread of the seeds" in line
    (line,) = compare_settings({"a": close_a, "far": far}, baseline="a")
    assert "larger than the spread" in line and "Steps to a's mean final val_loss" in line
    (line,) = compare_settings({"a": close_a[:1], "far": far[:1]}, baseline="a")
    assert "one seed has no spread" in line


def test_differences_beyond_the_compared_keys_are_named():
    base = {"topology.kind": "ancre", "train.steps": 200, "run.seed": 0, "run.name": "q"}
    other = {"topology.kind": "cascaded", "train.steps": 60, "run.seed": 1, "run.name": "c"}
    assert differing_keys({"q": base, "c": other}) == ["train.steps: q=200, c=60"]
    assert differing_keys({"q": base, "c": dict(base, **{"topology.kind": "x"})}) == []
    assert setting_key(base, "q") == setting_key(dict(base, **{"run.seed": 5}), "q2")
    assert setting_key(None, "a") != setting_key(None, "b")
