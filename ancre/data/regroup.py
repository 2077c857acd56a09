"""Saved data positions moved to another number of readers (processes x DataLoader workers).

Reader r of R takes line i of an epoch when ``i % R == r`` (``ancre.data.shards``). A
checkpoint holds, for every reader, the position after its last document and the tokens
it has read but not yet trained on (its packer's pending tokens).
:func:`regroup_loader_states` turns the loader states of R readers into those of R'
readers with this guarantee:

- **no line is read twice and none is left out**: every line that no old reader had
  reached is read by exactly one new reader;
- **nothing read is dropped**: each old reader's pending tokens go, whole and in order,
  to one new reader, which trains on them before anything else. No document is skipped.

How: the *frontier* is the furthest point any old reader reached. Old reader j's unread
lines below the frontier (its residue, from its own position on) become a *claim* that
new reader ``j % R'`` takes over, with j's pending tokens and skip counts; from the
frontier on, new reader r' takes the lines ``i % R' == r'``. A reader reads its claims
and its share past the frontier in one pass over the lines. Positions carry the claims
still ahead of them, so a checkpoint taken before they are done resumes, or regroups
again, the same way.

What changes is the order: the left-over lines are read before the lines past the
frontier, so batches after the change are not those an uninterrupted run with R readers
would have seen. They are exactly those when R' == R (the readers only move between
processes) and every rank was at the start of its round-robin over its workers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

Point = tuple[int, int]
"""(epoch, line index in the epoch): the order in which a reader meets lines."""


@dataclass(frozen=True)
class Claim:
    """Lines ``i`` with ``i % stride == residue`` between two points of the data.

    Attributes:
        stride: Readers the lines were dealt over.
        residue: Which of them.
        start: First point included.
        end: First point excluded; None: no end.
    """

    stride: int
    residue: int
    start: Point
    end: Point | None

    def takes(self, epoch: int, index: int) -> bool:
        """Whether the line ``index`` of ``epoch`` is in this claim."""
        point = (epoch, index)
        return (
            index % self.stride == self.residue
            and self.start <= point
            and (self.end is None or point < self.end)
        )

    def to_json(self) -> list[Any]:
        """``[stride, residue, [epoch, index], [epoch, index] | null]``."""
        end = None if self.end is None else list(self.end)
        return [self.stride, self.residue, list(self.start), end]

    @classmethod
    def from_json(cls, value: list[Any]) -> Claim:
        """The inverse of :meth:`to_json`."""
        stride, residue, start, end = value
        last = None if end is None else (int(end[0]), int(end[1]))
        return cls(int(stride), int(residue), (int(start[0]), int(start[1])), last)


def reader_claims(position: dict[str, Any] | None, reader: int, num_readers: int) -> list[Claim]:
    """The lines a reader reads: those its position names, else its plain share."""
    saved = (position or {}).get("claims")
    if saved:
        return [Claim.from_json(c) for c in saved]
    return [Claim(num_readers, reader, (0, 0), None)]


def claims_ahead(
    claims: list[Claim], epoch: int, seen: int, reader: int, num_readers: int
) -> list[list[Any]] | None:
    """The claims a position after ``seen`` lines of ``epoch`` must carry (None: none).

    A reader whose claims reduce to its plain share from here on carries nothing, so its
    positions look like those of a reader that was never regrouped.
    """
    point = (epoch, seen)
    left = [c for c in claims if c.end is None or c.end > point]
    if len(left) == 1:
        only = left[0]
        if (only.stride, only.residue, only.end) == (num_readers, reader, None) and (
            only.start <= point
        ):
            return None
    return [c.to_json() for c in left]


@dataclass(frozen=True)
class RegroupReport:
    """What moving the data positions did, for the log and metrics.jsonl.

    Attributes:
        readers_before: Readers that wrote the states.
        readers_after: Readers they were turned into.
        pending_tokens: Read-but-untrained tokens handed to new readers (none dropped).
        lines_handed_over: Unread lines below the frontier that new readers took over
            from old ones (None when a claim spans an epoch's end: not countable
            without reading the shards).
        documents_skipped: Documents no reader will read because of the change (0: the
            guarantee of this module).
        rotation_reset: Some rank was in the middle of its round-robin over its workers.
    """

    readers_before: int
    readers_after: int
    pending_tokens: int
    lines_handed_over: int | None
    documents_skipped: int
    rotation_reset: bool

    def as_record(self) -> dict[str, Any]:
        """The report as a JSON object."""
        return {
            "readers": f"{self.readers_before} -> {self.readers_after}",
            "pending_tokens_carried": self.pending_tokens,
            "lines_handed_over": self.lines_handed_over,
            "documents_skipped": self.documents_skipped,
        }


def _point(position: dict[str, Any]) -> Point:
    return (position.get("epoch", 0), position.get("seen", 0))


def _lines_in(claim: Claim) -> int | None:
    """How many lines a bounded claim holds, when it lies inside one epoch."""
    if claim.end is None or claim.start[0] != claim.end[0]:
        return None
    first, last = claim.start[1], claim.end[1]  # [first, last)
    below = lambda n: (n - claim.residue + claim.stride - 1) // claim.stride  # noqa: E731
    return max(0, below(last) - below(first))


def _merge(claims: list[Claim]) -> list[Claim]:
    """Joins claims of the same lines that meet end to start."""
    merged: list[Claim] = []
    for claim in sorted(claims, key=lambda c: (c.stride, c.residue, c.start)):
        last = merged[-1] if merged else None
        meets = last is not None and last.end == claim.start
        if meets and (last.stride, last.residue) == (claim.stride, claim.residue):
            merged[-1] = Claim(last.stride, last.residue, last.start, claim.end)
        else:
            merged.append(claim)
    return sorted(merged, key=lambda c: c.start)


def regroup_loader_states(
    states: list[dict[str, Any]], world_size: int, num_workers: int
) -> tuple[list[dict[str, Any]], RegroupReport]:
    """Turns every rank's saved loader state into those of another split of the readers.

    Args:
        states: Every old rank's ``TrainLoader.state_dict()``, in rank order.
        world_size: Processes of the resumed run.
        num_workers: Its ``data.num_workers``.

    Returns:
        The loader state of each new rank, in rank order, and what was done.

    Raises:
        ValueError: The states are not a whole set (ranks missing, mixed splits), or name
            a hub stream or a mixture, whose positions cannot be split over another number
            of readers (they can move to other processes).
    """
    old_world = len(states)
    old_workers = max(1, states[0]["num_workers"]) if states else 1
    for rank, state in enumerate(states):
        if (state["rank"], state["world_size"], max(1, state["num_workers"])) != (
            rank, old_world, old_workers,
        ):  # fmt: skip
            raise ValueError(
                f"the saved data positions are not one set: rank {rank}'s says rank "
                f"{state['rank']} of {state['world_size']} with {state['num_workers']} workers"
            )
    readers = [reader for state in states for reader in state["readers"]]
    old_count, new_workers = len(readers), max(1, num_workers)
    new_count = world_size * new_workers
    if any(reader and "mixture" in reader for reader in readers):
        if new_count != old_count:
            raise ValueError(
                f"a mixture's data positions cannot be split over another number of readers "
                f"({old_count} saved, {new_count} now): keep processes x data.num_workers"
            )
        new_readers, pending_tokens, handed = list(readers), 0, 0  # each reader stays
    else:
        new_readers, pending_tokens, handed = _moved_readers(readers, new_count)
    lists: dict[str, Any] = {}
    for state in states:
        lists.update(state.get("shard_lists", {}))
    base = states[0] if states else {"format": "ancre-data", "version": 2}
    new_states = [
        {
            "format": base["format"],
            "version": base["version"],
            "rank": rank,
            "world_size": world_size,
            "num_workers": num_workers,
            "next_reader": 0,
            "readers": new_readers[rank * new_workers : (rank + 1) * new_workers],
            "shard_lists": lists,
        }
        for rank in range(world_size)
    ]
    report = RegroupReport(
        readers_before=old_count,
        readers_after=new_count,
        pending_tokens=pending_tokens,
        lines_handed_over=handed,
        documents_skipped=0,
        rotation_reset=any(state["next_reader"] for state in states),
    )
    return new_states, report


def _moved_readers(
    readers: list[dict[str, Any] | None], new_count: int
) -> tuple[list[dict[str, Any] | None], int, int | None]:
    """The reader states of ``new_count`` readers that take over the lines of ``readers``.

    Returns:
        The new reader states, the pending tokens they carry and the lines handed over
        (None when not countable); see :class:`RegroupReport`.
    """
    old_count = len(readers)
    positions = [dict((reader or {}).get("position") or {}) for reader in readers]
    if new_count != old_count and any("dataset" in position for position in positions):
        raise ValueError("a hub stream's position cannot be split over another number of readers")
    claims = [reader_claims(p, j, old_count) for j, p in enumerate(positions)]
    frontier = max(
        [_point(p) for p in positions]
        + [c.end if c.end is not None else c.start for cs in claims for c in cs]
    )
    owed: list[list[Claim]] = [[] for _ in range(new_count)]
    pending: list[list[int]] = [[] for _ in range(new_count)]
    skipped: list[Counter[str]] = [Counter() for _ in range(new_count)]
    starts: list[list[int]] = [[] for _ in range(new_count)]
    handed: int | None = 0
    for j, position in enumerate(positions):
        target = j % new_count
        starts[target].append(j)
        here = _point(position)
        for claim in claims[j]:
            start = max(claim.start, here)
            end = frontier if claim.end is None else min(claim.end, frontier)
            if start < end:
                part = Claim(claim.stride, claim.residue, start, end)
                owed[target].append(part)
                count = _lines_in(part)
                handed = None if handed is None or count is None else handed + count
        reader = readers[j] or {}
        pending[target].extend(reader.get("pending", []))
        skipped[target].update(reader.get("skipped", {}))
    furthest = max(range(old_count), key=lambda j: _point(positions[j]))
    new_readers: list[dict[str, Any]] = []
    for r in range(new_count):
        first = min(starts[r], key=lambda j: _point(positions[j])) if starts[r] else furthest
        position = {k: v for k, v in positions[first].items() if k != "claims"}
        mine = _merge([*owed[r], Claim(new_count, r, frontier, None)])
        ahead = claims_ahead(mine, *_point(position), r, new_count)
        if ahead is not None:
            position["claims"] = ahead
        new_readers.append(
            {"position": position or None, "pending": pending[r], "skipped": dict(skipped[r])}
        )
    return new_readers, sum(len(p) for p in pending), handed
