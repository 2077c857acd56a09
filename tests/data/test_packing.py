"""Tests for ancre/data/packing.py: EOS-joined documents cut into fixed windows."""

from __future__ import annotations

import random

import pytest

from ancre.data.packing import pack_documents

EOS = 2


def random_documents(seed: int) -> list[list[int]]:
    """Token lists of varied lengths, some empty, with ids that are never EOS."""
    rng = random.Random(seed)
    return [[rng.randint(3, 99) for _ in range(rng.choice([0, 1, 5, 17, 64]))] for _ in range(40)]


def joined(documents: list[list[int]]) -> list[int]:
    return [token for ids in documents for token in [*ids, EOS]]


@pytest.mark.parametrize("window", [2, 7, 33, 257])
def test_windows_are_the_stream_cut_in_order(window: int) -> None:
    documents = random_documents(seed=window)
    stream = joined(documents)
    windows = list(pack_documents(documents, EOS, window))
    assert all(len(w) == window for w in windows)
    assert len(windows) == len(stream) // window
    assert [t for w in windows for t in w] == stream[: len(windows) * window]


def test_every_document_ends_with_eos() -> None:
    windows = list(pack_documents([[5, 6], [7], [], [8, 9, 10]], EOS, 3))
    assert windows == [[5, 6, EOS], [7, EOS, EOS], [8, 9, 10]]


def test_remainder_shorter_than_a_window_is_dropped() -> None:
    assert list(pack_documents([[5, 6, 7]], EOS, 5)) == []
    assert list(pack_documents([], EOS, 5)) == []


def test_lazy_over_an_endless_stream() -> None:
    endless = iter(lambda: [4, 5, 6], None)
    windows = pack_documents(endless, EOS, 6)
    first, second = [4, 5, 6, EOS, 4, 5], [6, EOS, 4, 5, 6, EOS]
    assert [next(windows) for _ in range(3)] == [first, second, first]


@pytest.mark.parametrize("window", [1, 0, -3])
def test_window_below_two_rejected(window: int) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        list(pack_documents([[5, 6, 7]], EOS, window))
