import pytest

from ancre.viz.curves import (
    final_value,
    first_crossing,
    median_spacing,
    series,
    smooth,
    steps_to_reach,
)


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


def test_steps_to_reach_reads_the_crossing_off_the_curve():
    assert steps_to_reach(RECORDS, 3.0) == 20  # equal counts as reached
    assert steps_to_reach(RECORDS, 3.5) == pytest.approx(15.0)  # halfway from 4.0 to 3.0
    assert steps_to_reach(RECORDS, 2.9) == pytest.approx(30 + 10 * (3.2 - 2.9) / (3.2 - 2.5))
    assert steps_to_reach(RECORDS, 100.0) == 0


def test_a_crossing_says_how_far_apart_its_points_are():
    crossing = first_crossing([0, 50, 100], [7.0, 5.0, 3.0], 4.0)
    assert (crossing.step, crossing.spacing) == (75.0, 50.0)
    assert first_crossing([0, 50], [7.0, 5.0], 8.0).spacing == 0.0
    assert first_crossing([0, 50], [7.0, 5.0], 1.0) is None


def test_steps_to_reach_never():
    assert steps_to_reach(RECORDS, 1.0) is None
    assert steps_to_reach([], 1.0) is None
    assert steps_to_reach([{"step": 5, "loss": 0.1}], 1.0) is None  # only training lines


def test_steps_to_reach_ignores_non_finite_and_order():
    records = [val(30, 1.0), val(10, float("nan")), val(20, None), {"val_loss": 0.5}]
    assert steps_to_reach(records, 2.0) == 30
    assert steps_to_reach(RECORDS, 2.0, key="loss") is None
    assert steps_to_reach(RECORDS, 5.0, key="loss") == 10


def test_series_final_value_smoothing_and_spacing():
    assert series(RECORDS, "loss") == ([10], [5.0])
    assert final_value(RECORDS) == 2.5
    assert final_value([{"step": 1, "loss": 2.0}]) is None
    line = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert smooth(line, window=3) == pytest.approx(line)  # a line is its own fit, ends too
    noisy = [1.0, 3.0, 1.0, 3.0, 1.0, 3.0]
    assert max(smooth(noisy)) - min(smooth(noisy)) < 1.0  # the zigzag is damped
    assert median_spacing([0, 10, 20, 50]) == 10 and median_spacing([5]) == 0
