import pytest

from ancre.viz.curves import compare_runs, final_value, series, steps_to_reach


def val(step, value):
    return {"step": step, "tokens": step * 10, "val_loss": value}


RECORDS = [
    {"step": 10, "loss": 5.0},
    val(0, 7.0),
    val(10, 4.0),
    val(20, 3.0),
    {"step": 20, "loss": None},
    val(30, 3.2),
    val(40, 2.5),
]


def test_steps_to_reach_first_step_at_or_below_target():
    assert steps_to_reach(RECORDS, 3.0) == 20  # equal counts as reached
    assert steps_to_reach(RECORDS, 3.1) == 20
    assert steps_to_reach(RECORDS, 2.9) == 40
    assert steps_to_reach(RECORDS, 100.0) == 0


def test_steps_to_reach_never():
    assert steps_to_reach(RECORDS, 1.0) is None
    assert steps_to_reach([], 1.0) is None
    assert steps_to_reach([{"step": 5, "loss": 0.1}], 1.0) is None  # only training lines


def test_steps_to_reach_ignores_non_finite_and_order():
    records = [val(30, 1.0), val(10, float("nan")), val(20, None), {"val_loss": 0.5}]
    assert steps_to_reach(records, 2.0) == 30
    assert steps_to_reach(RECORDS, 2.0, key="loss") is None
    assert steps_to_reach(RECORDS, 5.0, key="loss") == 10


def test_series_and_final_value():
    assert series(RECORDS, "loss") == ([10], [5.0])
    assert final_value(RECORDS) == 2.5
    assert final_value([{"step": 1, "loss": 2.0}]) is None


def test_compare_runs_step_ratio():
    baseline = [val(0, 7.0), val(50, 4.0), val(100, 3.0)]
    better = [val(0, 7.0), val(50, 3.5), val(70, 2.9), val(100, 2.5)]
    worse = [val(0, 7.0), val(100, 3.5)]
    (b, w) = compare_runs([("cascaded", baseline), ("ancre", better), ("slow", worse)])
    assert (b.run, b.baseline, b.target, b.steps, b.baseline_steps) == (
        "ancre",
        "cascaded",
        3.0,
        70,
        100,
    )
    assert b.step_ratio == pytest.approx(0.7)
    assert "30.0% fewer steps than cascaded" in b.describe()
    assert w.steps is None and w.step_ratio is None
    assert "does not reach" in w.describe()


def test_compare_runs_named_baseline_and_errors():
    a = [val(0, 7.0), val(100, 2.0)]
    b = [val(0, 7.0), val(50, 2.0), val(100, 1.5)]
    (c,) = compare_runs([("a", a), ("b", b)], baseline="b")
    assert (c.run, c.target, c.steps, c.baseline_steps) == ("a", 1.5, None, 100)
    (c,) = compare_runs([("a", a), ("b", b)])
    assert c.step_ratio == pytest.approx(0.5)
    assert "50.0% fewer" in c.describe()
    with pytest.raises(ValueError, match="baseline 'z'"):
        compare_runs([("a", a), ("b", b)], baseline="z")
    with pytest.raises(ValueError, match="no val_loss"):
        compare_runs([("a", [{"step": 1, "loss": 1.0}]), ("b", b)])
