import math

import pytest

from ancre.train.schedule import warmup_cosine


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
