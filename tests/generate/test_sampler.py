"""Greedy choice and the top-k / top-p filters of sampling."""

from __future__ import annotations

import pytest
import torch

from ancre.generate.sampler import Sampling, next_tokens

PROBS = torch.tensor([[0.05, 0.5, 0.15, 0.3]])  # (1, V): order 1, 3, 2, 0


def drawn(sampling: Sampling, draws: int = 400) -> set[int]:
    generator = torch.Generator().manual_seed(0)
    logits = PROBS.log().expand(draws, -1)  # (draws, V)
    return set(next_tokens(logits, sampling, generator).tolist())


def test_temperature_zero_is_the_argmax():
    assert next_tokens(PROBS.log(), Sampling(temperature=0.0)).tolist() == [1]


def test_top_k_keeps_the_k_most_likely():
    assert drawn(Sampling(top_k=2)) == {1, 3}
    assert drawn(Sampling()) == {0, 1, 2, 3}


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert drawn(Sampling(top_p=0.75)) == {1, 3}  # 0.5 + 0.3 >= 0.75
    assert drawn(Sampling(top_p=0.85)) == {1, 2, 3}
    assert drawn(Sampling(top_p=0.4)) == {1}


@pytest.mark.parametrize(
    "settings", [{"temperature": -1.0}, {"top_k": -2}, {"top_p": 0.0}, {"top_p": 1.5}]
)
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValueError):
        Sampling(**settings)
