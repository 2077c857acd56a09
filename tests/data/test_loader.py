"""Tests for ancre/data/loader.py: per-rank training batches and the validation set."""

from __future__ import annotations

import inspect
import json
import logging
from collections import Counter
from pathlib import Path

import pytest
import torch

from ancre.data.loader import TrainBatches, validation_windows
from ancre.data.packing import pack_documents

SEQ_LEN = 16


@pytest.fixture
def shards(tmp_path: Path, write_shard, documents) -> list[Path]:
    """The 200 documents over three shards of uneven size."""
    return [
        write_shard(tmp_path / "c4-train.00000-of-00003.json.gz", documents[:70]),
        write_shard(tmp_path / "c4-train.00001-of-00003.json.gz", documents[70:71]),
        write_shard(tmp_path / "c4-train.00002-of-00003.json.gz", documents[71:]),
    ]


def all_windows(tokenizer, texts: list[str], seq_len: int = SEQ_LEN) -> list[list[int]]:
    return list(pack_documents(tokenizer.encode(texts), tokenizer.eos_id, seq_len + 1))


def test_batch_shapes_and_shifted_targets(shards, tokenizer, documents) -> None:
    batches = TrainBatches(shards, tokenizer, "text", SEQ_LEN, micro_batch_size=4)
    inputs, targets = next(batches)
    assert inputs.shape == targets.shape == (4, SEQ_LEN)
    assert inputs.dtype == targets.dtype == torch.long
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    expected = torch.tensor(all_windows(tokenizer, documents)[:4])
    assert torch.equal(inputs, expected[:, :-1]) and torch.equal(targets, expected[:, 1:])


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_documents_exactly(shards, tokenizer, documents, world_size) -> None:
    per_rank = [
        list(
            TrainBatches(shards, tokenizer, "text", SEQ_LEN, 1, rank, world_size)._rank_documents()
        )
        for rank in range(world_size)
    ]
    assert Counter(doc for docs in per_rank for doc in docs) == Counter(documents)
    for rank, docs in enumerate(per_rank):
        assert docs == documents[rank::world_size]


def test_rank_windows_come_from_its_own_documents(shards, tokenizer, documents) -> None:
    batches = TrainBatches(shards, tokenizer, "text", SEQ_LEN, 2, rank=1, world_size=2)
    expected = torch.tensor(all_windows(tokenizer, documents[1::2])[:6])
    rows = torch.cat(
        [torch.cat([x, y[:, -1:]], dim=1) for x, y in (next(batches) for _ in range(3))]
    )
    assert torch.equal(rows, expected)


def test_bad_rank_rejected(shards, tokenizer) -> None:
    with pytest.raises(ValueError, match="outside"):
        TrainBatches(shards, tokenizer, "text", SEQ_LEN, 1, rank=2, world_size=2)


def test_epochs_wrap_around(tmp_path, write_shard, tokenizer, documents) -> None:
    texts = documents[:6]
    shard = write_shard(tmp_path / "c4-train.00000-of-00001.json.gz", texts)
    windows = all_windows(tokenizer, texts)
    batches = TrainBatches([shard], tokenizer, "text", SEQ_LEN, micro_batch_size=1)
    seen = [next(batches)[0][0].tolist() for _ in range(len(windows))]
    assert seen == [w[:-1] for w in windows] and batches.epoch == 0
    assert next(batches)[0][0].tolist() == windows[0][:-1]
    assert batches.epoch == 1
    for _ in range(len(windows)):
        next(batches)
    assert batches.epoch == 2


def test_skipped_lines_are_counted(tmp_path, write_lines, tokenizer, documents) -> None:
    lines = [json.dumps({"text": documents[0]}), "not json", json.dumps({"url": 1})]
    shard = write_lines(tmp_path / "c4-train.00000-of-00001.jsonl", lines * 3)
    batches = TrainBatches([shard], tokenizer, "text", 4, micro_batch_size=1)
    next(batches)
    assert batches.skipped == Counter({"malformed_json": 3, "missing_field": 3})


def test_corpus_too_small(tmp_path, write_shard, tokenizer) -> None:
    shard = write_shard(tmp_path / "c4-train.00000-of-00001.json.gz", ["tiny"])
    batches = TrainBatches([shard], tokenizer, "text", 512, micro_batch_size=1)
    with pytest.raises(ValueError, match="no complete sequence of 513 tokens"):
        next(batches)


def test_validation_takes_no_rank() -> None:
    parameters = set(inspect.signature(validation_windows).parameters)
    assert not parameters & {"rank", "world_size"}


def test_validation_windows(shards, tokenizer, documents) -> None:
    windows = validation_windows(shards, tokenizer, "text", SEQ_LEN, 3 * SEQ_LEN + 1)
    assert windows.dtype == torch.long and windows.shape == (4, SEQ_LEN + 1)
    assert windows.tolist() == all_windows(tokenizer, documents)[:4]
    again = validation_windows(shards, tokenizer, "text", SEQ_LEN, 3 * SEQ_LEN + 1)
    assert torch.equal(again, windows)
    exact = validation_windows(shards, tokenizer, "text", SEQ_LEN, 3 * SEQ_LEN)
    assert torch.equal(exact, windows[:3])


def test_validation_short_data_warns(tmp_path, write_shard, tokenizer, documents, caplog) -> None:
    shard = write_shard(tmp_path / "c4-validation.00000-of-00001.json.gz", documents[:3])
    available = len(all_windows(tokenizer, documents[:3]))
    with caplog.at_level(logging.WARNING, logger="ancre.data.loader"):
        windows = validation_windows([shard], tokenizer, "text", SEQ_LEN, 10_000)
    assert windows.shape == (available, SEQ_LEN + 1)
    assert f"holds {available * SEQ_LEN} tokens" in caplog.text and "10000" in caplog.text


def test_validation_empty_raises(tmp_path, write_shard, tokenizer) -> None:
    shard = write_shard(tmp_path / "c4-validation.00000-of-00001.json.gz", ["tiny"])
    with pytest.raises(ValueError) as info:
        validation_windows([shard], tokenizer, "text", 512, 1000)
    assert str(shard) in str(info.value) and "513" in str(info.value)
