import math

import pytest

from ancre.config import ConfigError, TrainConfig
from ancre.config.train import SCHEDULES
from ancre.train.schedule import lr_factor, schedule_change, warmup_cosine


def test_warmup_rises_linearly_to_the_peak():
    factors = [warmup_cosine(s, 100, 10, 0.1) for s in range(10)]
    assert factors == pytest.approx([(s + 1) / 10 for s in range(10)])


def test_cosine_decays_to_the_minimum_ratio():
    assert warmup_cosine(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert warmup_cosine(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(1000, 100, 10, 0.1) == pytest.approx(0.1)


def test_decay_is_monotonic_without_warmup():
    factors = [warmup_cosine(s, 50, 0, 0.0) for s in range(51)]
    assert factors[0] == 1.0 and math.isclose(factors[-1], 0.0, abs_tol=1e-12)
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))


def train(**values) -> TrainConfig:
    fields = {"steps": 100, "warmup_steps": 10, "min_lr_ratio": 0.1, **values}
    config = TrainConfig(**fields)
    config.check()
    return config


def test_every_schedule_warms_up_the_same_way():
    for schedule in SCHEDULES:
        config = train(schedule=schedule)
        factors = [lr_factor(s, config) for s in range(10)]
        assert factors == pytest.approx([(s + 1) / 10 for s in range(10)]), schedule


def test_cosine_is_the_old_schedule_and_linear_and_constant_end_where_they_say():
    cosine = train(schedule="cosine")
    assert [lr_factor(s, cosine) for s in range(120)] == [
        warmup_cosine(s, 100, 10, 0.1) for s in range(120)
    ]
    linear = train(schedule="linear")
    assert lr_factor(10, linear) == 1.0 and lr_factor(55, linear) == pytest.approx(0.55)
    assert lr_factor(100, linear) == pytest.approx(0.1) == lr_factor(150, linear)
    constant = train(schedule="constant")
    assert {lr_factor(s, constant) for s in range(10, 200)} == {1.0}


def test_wsd_is_stable_then_decays_over_its_last_fraction():
    wsd = train(schedule="wsd", decay_fraction=0.2)
    assert wsd.decay_start == 80
    assert {lr_factor(s, wsd) for s in range(10, 81)} == {1.0}
    assert lr_factor(90, wsd) == pytest.approx(0.55) and lr_factor(100, wsd) == pytest.approx(0.1)
    root = train(schedule="wsd", decay_fraction=0.2, decay_shape="1-sqrt")
    assert lr_factor(85, root) == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(0.25)))
    assert lr_factor(85, root) < lr_factor(85, wsd)  # 1-sqrt falls faster at first
    branched = train(schedule="wsd", steps=60, decay_from=50)
    assert lr_factor(49, branched) == lr_factor(50, branched) == 1.0
    assert lr_factor(55, branched) == pytest.approx(0.55)


def test_an_extended_wsd_run_keeps_its_learning_rate_and_a_cosine_one_says_it_stretched():
    short, long = train(schedule="wsd", steps=100), train(schedule="wsd", steps=200)
    said = schedule_change(60, short, long)
    assert said is not None and "stable phase goes on" in said and "no jump" in said
    assert "decay now starts at step 160" in said
    assert schedule_change(60, short, short) is None
    late = schedule_change(90, short, long)  # already decaying: it goes back up
    assert late is not None and "a jump" in late
    said = schedule_change(60, train(steps=100), train(steps=200))
    assert said is not None and "cosine schedule is stretched from 100 to 200 steps" in said
    lr = 1e-3
    before, after = lr * warmup_cosine(60, 100, 10, 0.1), lr * warmup_cosine(60, 200, 10, 0.1)
    assert f"{before:.4g} as before, {after:.4g} now (a jump)" in said


@pytest.mark.parametrize(
    "values, key, says",
    [
        ({"schedule": "wsd", "decay_from": 100}, "train.decay_from", "at or after the end"),
        ({"schedule": "wsd", "decay_from": 5}, "train.decay_from", "before the warmup ends"),
        ({"schedule": "wsd", "decay_fraction": 0.95}, "train.decay_fraction", "before the warmup"),
        ({"schedule": "wsd", "decay_fraction": 0.0}, "train.decay_fraction", "above 0"),
        ({"schedule": "cosine", "decay_from": 50}, "train.decay_from", "only a wsd schedule"),
        ({"schedule": "onecycle"}, "train.schedule", "cosine, wsd, linear, constant"),
        ({"decay_shape": "cube"}, "train.decay_shape", "linear, 1-sqrt"),
        ({"spike_factor": 0.5}, "train.spike_factor", "above 1"),
        ({"spike_window": 0}, "train.spike_window", "positive"),
        ({"z_loss": -1e-4}, "train.z_loss", "zero or positive"),
    ],
)
def test_a_bad_schedule_or_objective_is_refused_naming_the_key(values, key, says):
    with pytest.raises(ConfigError) as error:
        train(**values)
    assert error.value.key == key and says in str(error.value)
