"""A weighted mixture of sources: each window from one source, every share at its weight.

A reader of a mixture (``data.sources``, docs/data.md) holds one window reader per
source, each with its own documents, packer and position. It takes the next window
from the source furthest below its share of the tokens taken so far: the source k
that maximises ``w_k * total - taken_k`` (ties to the first listed), as Megatron's
blended datasets choose samples. The interleave is then fixed by the weights alone,
each source's shard order by the run's seed, and every source's share of the tokens
stays within one window of its weight at any point of the run.

The reader's state holds every source's reader state and the tokens taken from each
(target tokens, those trained on):
a reader given it back continues exactly, window for window. A mixture's positions
cannot be split over another number of readers (``ancre.data.regroup`` refuses).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from ancre.data.shards import DataError

K = TypeVar("K", bound=Hashable)


def furthest_below(weights: Mapping[K, float], taken: Mapping[K, int], among: Iterable[K]) -> K:
    """The stream whose share of what was taken is furthest below its weight.

    The k of ``among`` that maximises ``weights[k] * total - taken[k]`` (``total``: all
    taken, of every stream); ties to the first. The rule of the mixture's windows (in
    tokens) and of the tokenizer's training texts (in characters).
    """
    total = sum(taken.values())
    return max(among, key=lambda k: weights[k] * total - taken[k])


class Windows(Protocol):
    """One source's windows (``ancre.data.loader.WindowReader``)."""

    def __next__(self) -> tuple[list[int], int]:
        """The next window (T+1 ids) and its count of real tokens."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Where the reader stands (its position, pending tokens and skip counts)."""
        ...


class MixtureReader:
    """Windows of several sources, interleaved by weight, with a state to restart from.

    Args:
        readers: Each source's window reader, by name, in the order of ``data.sources``.
        weights: Each source's weight, normalised to sum 1.
        state: A :meth:`state_dict` to continue from (None: the start).
    """

    def __init__(
        self,
        readers: dict[str, Windows],
        weights: dict[str, float],
        state: dict[str, Any] | None = None,
    ) -> None:
        self.readers = readers
        self.weights = weights
        self.taken: Counter[str] = Counter((state or {}).get("taken", {}))

    def __iter__(self) -> Iterator[tuple[list[int], int]]:
        return self

    def __next__(self) -> tuple[list[int], int]:
        """The next window (T+1 ids) and its count of real tokens."""
        name = furthest_below(self.weights, self.taken, self.readers)
        try:
            window, valid = next(self.readers[name])
        except DataError as error:
            raise DataError(f"data.sources {name!r}: {error}") from None
        self.taken[name] += valid - 1  # the targets it trains on
        return window, valid

    def state_dict(self) -> dict[str, Any]:
        """Every source's reader state, the tokens taken from each, all skips summed."""
        sources = {name: reader.state_dict() for name, reader in self.readers.items()}
        skipped: Counter[str] = Counter()
        for state in sources.values():
            skipped.update(state["skipped"])
        return {
            "position": None,
            "mixture": sources,
            "taken": {name: self.taken[name] for name in self.readers},
            "skipped": dict(skipped),
        }


def source_states(reader: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """One source's reader state out of a saved reader state (None: it has none yet)."""
    return ((reader or {}).get("mixture") or {}).get(name)
