"""Data positions moved to another number of readers: nothing read twice, nothing lost."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import pytest

from ancre.config import DataConfig
from ancre.data.loader import TrainLoader
from ancre.data.regroup import regroup_loader_states
from ancre.data.shards import LocalShards, find_shards, shard_list

NUMBER = re.compile(r"^Document (\d+):")


def shards(folder: Path, write_shard, documents: list[str]) -> list:
    """Three shards of the generated documents (unshuffled: line order is document order)."""
    for i, part in enumerate((documents[:70], documents[70:130], documents[130:])):
        write_shard(folder / f"c4-train.{i:05d}-of-00003.json", part)
    return shard_list(find_shards(str(folder), "train"))


def read(source: LocalShards, position: dict | None, count: int) -> tuple[list[int], dict | None]:
    """The numbers of the next ``count`` documents, and the position after them."""
    pairs = list(itertools.islice(source.documents(position, Counter()), count))
    ids = [int(NUMBER.match(text).group(1)) for text, _ in pairs]
    return ids, pairs[-1][1] if pairs else position


def loader_states(positions: list, world: int, workers: int, pending: list) -> list[dict]:
    """Loader states of ``world`` ranks holding the readers' positions and pending tokens."""
    readers = [
        {"position": p, "pending": t, "skipped": {"empty": 1}}
        for p, t in zip(positions, pending, strict=True)
    ]
    return [
        {"format": "ancre-data", "version": 2, "rank": r, "world_size": world,
         "num_workers": workers, "next_reader": 0,
         "readers": readers[r * max(1, workers) : (r + 1) * max(1, workers)], "shard_lists": {}}
        for r in range(world)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after", "counts"),
    [(2, 1, [9, 5]), (1, 2, [12]), (4, 3, [3, 8, 1, 6]), (3, 5, [0, 7, 4]), (2, 2, [4, 9])],
)
def test_every_document_is_read_once_after_any_change(
    tmp_path, write_shard, documents, before, after, counts
):
    listed = shards(tmp_path, write_shard, documents)
    old = [LocalShards(listed, "text", j, before, shuffle=False) for j in range(before)]
    read_before, positions = [], []
    for j, count in enumerate(counts):
        ids, position = read(old[j], None, count)
        read_before += ids
        positions.append(position)
    pending = [[100 + j] * (j + 1) for j in range(before)]
    states, report = regroup_loader_states(loader_states(positions, before, 0, pending), after, 0)

    new_readers = [reader for state in states for reader in state["readers"]]
    read_after, reached = [], []
    for r, reader in enumerate(new_readers):
        source = LocalShards(listed, "text", r, after, shuffle=False)
        ids, _ = read(source, reader["position"], 25)
        read_after += ids
        reached.append(ids[-1])
    everything = read_before + read_after
    assert len(everything) == len(set(everything))  # nothing read twice
    # nothing left out: every document before the slowest new reader's last one was read
    assert set(range(min(reached))) <= set(everything)
    assert report.documents_skipped == 0
    # pending tokens and skip counts move whole, to reader j % R'
    carried = [t for reader in new_readers for t in reader["pending"]]
    assert sorted(carried) == sorted(t for p in pending for t in p)
    assert new_readers[0]["pending"][: len(pending[0])] == pending[0]
    assert sum(reader["skipped"].get("empty", 0) for reader in new_readers) == before
    assert report.pending_tokens == len(carried)
    if before == after:  # only moved: every position is the plain one it was
        assert [reader["position"] for reader in new_readers] == positions


def test_a_second_change_before_the_handed_over_lines_are_read(tmp_path, write_shard, documents):
    listed = shards(tmp_path, write_shard, documents)
    old = [LocalShards(listed, "text", j, 3, shuffle=False) for j in range(3)]
    first = [read(old[j], None, n) for j, n in enumerate([2, 10, 6])]
    states, _ = regroup_loader_states(
        loader_states([p for _, p in first], 3, 0, [[], [], []]), 2, 0
    )
    middle = [
        read(LocalShards(listed, "text", r, 2, shuffle=False), reader["position"], 1)
        for r, reader in enumerate(s for state in states for s in state["readers"])
    ]
    assert "claims" in middle[0][1]  # still owing lines of the slow old readers 0 and 2
    again, _ = regroup_loader_states(loader_states([p for _, p in middle], 2, 0, [[], []]), 4, 0)
    last = [
        read(LocalShards(listed, "text", r, 4, shuffle=False), s["position"], 20)[0]
        for r, s in enumerate(s for state in again for s in state["readers"])
    ]
    everything = [i for ids, _ in first + middle for i in ids] + [i for ids in last for i in ids]
    assert len(everything) == len(set(everything))
    assert set(range(min(ids[-1] for ids in last))) <= set(everything)


def test_the_loader_continues_from_a_regrouped_state(tmp_path, write_shard, documents, tokenizer):
    shards(tmp_path, write_shard, documents)
    config = DataConfig(path=str(tmp_path), seq_len=16, num_workers=0, shuffle=False)
    old = [TrainLoader(config, tokenizer, 2, rank, 2) for rank in range(2)]
    for loader in old:
        next(loader)
    states, report = regroup_loader_states([loader.state_dict() for loader in old], 1, 2)
    resumed = TrainLoader(
        DataConfig(path=str(tmp_path), seq_len=16, num_workers=2, shuffle=False), tokenizer, 2
    )
    resumed.load_state_dict(states[0])
    inputs, targets = next(resumed)
    assert inputs.shape == (2, 16) and report.readers_after == 2
    # two readers before and after: the positions move unchanged, so the batches continue
    for worker, loader in enumerate(old):
        expected, _ = next(loader)
        got = inputs if worker == 0 else next(resumed)[0]
        assert got.equal(expected)


def test_a_hub_position_moves_but_is_not_split():
    hub = [{"epoch": 1, "dataset": {"shard": 3}}, {"epoch": 1, "dataset": {"shard": 4}}]
    moved, _ = regroup_loader_states(loader_states(hub, 2, 0, [[], []]), 1, 2)
    assert [reader["position"] for reader in moved[0]["readers"]] == hub
    with pytest.raises(ValueError, match="hub stream"):
        regroup_loader_states(loader_states(hub, 2, 0, [[], []]), 1, 0)
