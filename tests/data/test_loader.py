"""Tests for ancre/data/loader.py: per-rank batches, exact resume, the validation set."""

from __future__ import annotations

import inspect
import json
import logging
from collections import Counter
from pathlib import Path

import pytest
import torch

from ancre.config import DataConfig
from ancre.data.loader import (
    IGNORE_INDEX,
    TrainLoader,
    WindowReader,
    to_batch,
)
from ancre.data.packing import pack_documents
from ancre.data.positions import check_resume_data
from ancre.data.shards import DataError, LocalShards, epoch_order, shard_list
from ancre.data.validation import validation_set

SEQ_LEN = 16


@pytest.fixture
def folder(tmp_path: Path, write_shard, documents) -> Path:
    """The 200 documents over three training shards of uneven size, and a validation shard."""
    write_shard(tmp_path / "c4-train.00000-of-00003.json.gz", documents[:70])
    write_shard(tmp_path / "c4-train.00001-of-00003.json.gz", documents[70:71])
    write_shard(tmp_path / "c4-train.00002-of-00003.json.gz", documents[71:])
    write_shard(tmp_path / "c4-validation.00000-of-00001.json.gz", documents[:40])
    return tmp_path


def data(folder: Path, **changes) -> DataConfig:
    return DataConfig(**{"path": str(folder), "seq_len": SEQ_LEN, "shuffle": False, **changes})


def all_windows(tokenizer, texts: list[str]) -> list[list[int]]:
    return list(pack_documents(tokenizer.encode(texts), tokenizer.eos_id, SEQ_LEN + 1))


def take(loader: TrainLoader, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [next(loader) for _ in range(n)]


def test_ignore_index_matches_the_model() -> None:
    assert IGNORE_INDEX == torch.nn.CrossEntropyLoss().ignore_index  # what the model leaves out


def test_batches_are_the_packed_stream(folder, tokenizer, documents) -> None:
    loader = TrainLoader(data(folder), tokenizer, micro_batch_size=4)
    inputs, targets = next(loader)
    assert inputs.shape == targets.shape == (4, SEQ_LEN) and inputs.dtype == torch.long
    expected = torch.tensor(all_windows(tokenizer, documents)[:4])
    assert torch.equal(inputs, expected[:, :-1]) and torch.equal(targets, expected[:, 1:])


@pytest.mark.parametrize(("world_size", "workers"), [(1, 2), (2, 1), (3, 1), (2, 3)])
def test_readers_cover_every_document_once_per_epoch(folder, documents, world_size, workers):
    shards = shard_list(sorted(folder.glob("c4-train*")))
    readers = world_size * workers
    seen = []
    for reader in range(readers):
        source = LocalShards(shards, "text", reader, readers, shuffle=True)
        for text, position in source.documents(None, Counter()):
            if position["epoch"] > 0:
                break
            seen.append(text)
    assert Counter(seen) == Counter(documents)


@pytest.mark.parametrize(("world_size", "workers"), [(1, 0), (1, 2), (2, 0), (2, 2)])
def test_restored_loader_yields_what_an_uninterrupted_one_does(
    folder, tokenizer, world_size, workers
) -> None:
    config = data(folder, num_workers=workers, shuffle=True)
    for rank in range(world_size):
        loader = TrainLoader(config, tokenizer, 3, rank, world_size, seed=5)
        take(loader, 7)
        state = json.loads(json.dumps(loader.state_dict()))  # what a checkpoint stores
        expected = take(loader, 9)
        restored = TrainLoader(config, tokenizer, 3, rank, world_size, seed=5)
        restored.load_state_dict(state)
        for (x, y), (rx, ry) in zip(expected, take(restored, 9), strict=True):
            assert torch.equal(x, rx) and torch.equal(y, ry)


def test_resume_does_not_parse_consumed_lines(tmp_path, write_shard, write_lines, tokenizer):
    texts = [f"Document {i}: the river stone anchor layer block state." for i in range(60)]
    shard = write_shard(tmp_path / "c4-train.00000-of-00001.jsonl", texts)
    loader = TrainLoader(data(tmp_path), tokenizer, micro_batch_size=2)
    take(loader, 3)
    state = loader.state_dict()
    expected = take(loader, 4)
    consumed = state["readers"][0]["position"]["line"]
    lines = shard.read_text().splitlines()
    write_lines(shard, ["garbage"] * consumed + lines[consumed:])
    restored = TrainLoader(data(tmp_path), tokenizer, micro_batch_size=2)
    restored.load_state_dict(state)
    for (x, _), (rx, _) in zip(expected, take(restored, 4), strict=True):
        assert torch.equal(x, rx)
    assert restored.skipped() == Counter()


def test_state_from_another_world_is_refused(folder, tokenizer) -> None:
    state = TrainLoader(data(folder), tokenizer, 2, rank=0, world_size=2).state_dict()
    with pytest.raises(ValueError, match="rank 0 of 2 with 0 workers; this is rank 0 of 1"):
        TrainLoader(data(folder), tokenizer, 2).load_state_dict(state)


def test_epochs_wrap_around_and_reshuffle(tmp_path, write_shard, tokenizer, documents) -> None:
    for i in range(4):
        write_shard(tmp_path / f"c4-train.{i:05d}-of-00004.json.gz", documents[i * 5 : i * 5 + 5])
    source = LocalShards(shard_list(sorted(tmp_path.glob("c4-train*"))), "text", seed=3)
    orders = [[s.key for s in epoch_order(source.shards, 3, e, True)] for e in range(4)]
    assert all(sorted(order) == sorted(orders[0]) for order in orders)
    assert len({tuple(order) for order in orders}) > 1
    documents_with_positions = zip(range(45), source.documents(None, Counter()), strict=False)
    epochs = [position["epoch"] for _, (_, position) in documents_with_positions]
    assert epochs == [0] * 20 + [1] * 20 + [2] * 5


def test_skipped_lines_are_counted_and_kept_across_resume(tmp_path, write_lines, tokenizer):
    good = json.dumps({"text": "the river stone anchor layer residual weight matrix " * 3})
    lines = [good, "not json", json.dumps({"url": 1}), good, json.dumps({"text": " "})] * 6
    write_lines(tmp_path / "c4-train.00000-of-00001.jsonl", lines)
    loader = TrainLoader(data(tmp_path), tokenizer, micro_batch_size=1)
    take(loader, 10)
    counts = loader.skipped()
    assert counts["malformed_json"] >= 1 and counts["missing_field"] >= 1
    assert set(counts) <= {"malformed_json", "missing_field", "empty"}
    restored = TrainLoader(data(tmp_path), tokenizer, micro_batch_size=1)
    restored.load_state_dict(loader.state_dict())
    assert restored.skipped() == counts


def test_corpus_without_documents_for_a_reader(tmp_path, write_shard, tokenizer) -> None:
    write_shard(tmp_path / "c4-train.00000-of-00001.json.gz", ["only one document"])
    loader = TrainLoader(data(tmp_path), tokenizer, 1, rank=1, world_size=2)
    with pytest.raises(ValueError, match="reader 1 of 2 found no document"):
        next(loader)


def test_packing_none_masks_padding(tmp_path, write_shard, tokenizer) -> None:
    texts = ["short one", "a much longer document " * 20]
    write_shard(tmp_path / "c4-train.00000-of-00001.json.gz", texts)
    inputs, targets = next(TrainLoader(data(tmp_path, packing="none"), tokenizer, 2))
    short = tokenizer.encode_one(texts[0]) + [tokenizer.eos_id]
    assert inputs[0, : len(short)].tolist() == short
    assert targets[0, : len(short) - 1].tolist() == short[1:]
    assert torch.all(targets[0, len(short) - 1 :] == IGNORE_INDEX)
    assert torch.all(targets[1] != IGNORE_INDEX)  # truncated, no padding


def test_to_batch_masks_past_the_real_tokens() -> None:
    inputs, targets = to_batch([([1, 2, 3, 9, 9], 3), ([4, 5, 6, 7, 8], 5)])
    assert inputs.tolist() == [[1, 2, 3, 9], [4, 5, 6, 7]]
    assert targets.tolist() == [[2, 3, IGNORE_INDEX, IGNORE_INDEX], [5, 6, 7, 8]]


def test_validation_takes_no_rank() -> None:
    assert not set(inspect.signature(validation_set).parameters) & {"rank", "world_size"}


def test_validation_set_is_the_first_tokens(folder, tokenizer, documents) -> None:
    inputs, targets = validation_set(data(folder), tokenizer, 3 * SEQ_LEN + 1)
    windows = torch.tensor(all_windows(tokenizer, documents[:40])[:4])
    assert torch.equal(inputs, windows[:, :-1]) and torch.equal(targets, windows[:, 1:])
    exact, _ = validation_set(data(folder), tokenizer, 3 * SEQ_LEN)
    assert torch.equal(exact, inputs[:3])


def test_validation_short_data_warns(folder, tokenizer, documents, caplog) -> None:
    available = len(all_windows(tokenizer, documents[:40]))
    with caplog.at_level(logging.WARNING, logger="ancre.data.loader"):
        inputs, _ = validation_set(data(folder), tokenizer, 10**6)
    assert inputs.shape == (available, SEQ_LEN)
    assert f"holds {available} sequences" in caplog.text


def test_validation_empty_raises(tmp_path, write_shard, tokenizer) -> None:
    write_shard(tmp_path / "c4-validation.00000-of-00001.json.gz", ["tiny"])
    with pytest.raises(DataError, match="fewer than 17 tokens"):
        validation_set(data(tmp_path), tokenizer, 1000)


# --- poison input and changed shard folders ---


class Documents:
    """A document source that yields given texts, to reach the tokenizer with anything."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def documents(self, position, skipped):
        for i, text in enumerate(self.texts):
            yield text, {"shard": "fake.jsonl", "line": i + 1}


def test_a_document_the_tokenizer_rejects_is_skipped_counted_and_named(tokenizer, caplog):
    texts = ["the river", "a lone surrogate \ud800 reaches the tokenizer", "anchor stone " * 20]
    with pytest.raises(RuntimeError):
        tokenizer.encode_one(texts[1])  # what sentencepiece does with it
    reader = WindowReader(Documents(texts), tokenizer, SEQ_LEN + 1, "docs")
    with caplog.at_level(logging.WARNING, logger="ancre.data.loader"):
        windows = [next(reader) for _ in range(2)]
    assert all(len(w) == SEQ_LEN + 1 for w, _ in windows)
    assert reader.skipped == Counter({"tokenizer_error": 1})
    assert "fake.jsonl:2 (tokenizer_error)" in caplog.text


def test_poison_lines_never_stop_the_loader(tmp_path, write_lines, tokenizer):
    good = json.dumps({"text": "the river stone anchor layer residual weight matrix " * 3})
    poison = [
        b'{"text": "\\ud800"}', b"[" * 200_000 + b"]" * 200_000,
        b'{"text": "x", "n": ' + b"9" * 5000 + b"}", b"\xff\xfe",
    ]  # fmt: skip
    write_lines(tmp_path / "c4-train.00000-of-00001.jsonl", [good, *poison, good] * 3)
    loader = TrainLoader(data(tmp_path), tokenizer, micro_batch_size=2)
    take(loader, 6)
    counts = loader.skipped()
    assert counts["invalid_text"] >= 1 and counts["malformed_json"] >= 2
    assert counts["invalid_utf8"] >= 1


def test_empty_and_unreadable_shards_are_counted_once_and_named(tmp_path, write_shard, caplog):
    write_shard(tmp_path / "c4-train.00000-of-00003.json.gz", ["kept one", "kept two"])
    (tmp_path / "c4-train.00001-of-00003.json.gz").write_bytes(b"")
    (tmp_path / "c4-train.00002-of-00003.json.gz").write_bytes(b"not gzip at all\n")
    shards = shard_list(sorted(tmp_path.glob("c4-train*")))
    total: Counter[str] = Counter()
    seen = []
    with caplog.at_level(logging.WARNING, logger="ancre.data.shards"):
        for reader in range(2):
            for text, position in LocalShards(shards, "text", reader, 2, shuffle=False).documents(
                None, total
            ):
                if position["epoch"] > 0:
                    break
                seen.append(text)
    assert sorted(seen) == ["kept one", "kept two"]
    assert total == Counter({"unreadable_file": 2})  # once per epoch, not once per reader
    assert "00001-of-00003.json.gz from line 1 (unreadable_file): the file is empty" in caplog.text
    assert "00002-of-00003.json.gz" in caplog.text


def epoch_of_texts(loader_config, tokenizer, state=None, batches=12):
    loader = TrainLoader(loader_config, tokenizer, micro_batch_size=2, seed=4)
    if state is not None:
        loader.load_state_dict(state)
    return loader, take(loader, batches)


def test_added_shards_join_at_the_next_epoch_and_the_change_is_reported(
    tmp_path, write_shard, tokenizer, documents
):
    for i in range(3):
        write_shard(tmp_path / f"c4-train.{i:05d}-of-00004.json.gz", documents[i * 4 : i * 4 + 4])
    config = data(tmp_path, shuffle=True)
    loader, _ = epoch_of_texts(config, tokenizer, batches=5)
    state = json.loads(json.dumps(loader.state_dict()))
    position = state["readers"][0]["position"]
    assert position["shard"].startswith("c4-train.") and "list" in position
    # continuing on the unchanged folder: the reference
    _, expected = epoch_of_texts(config, tokenizer, state, batches=150)
    write_shard(tmp_path / "c4-train.00003-of-00004.json.gz", documents[60:64])
    notes = check_resume_data(config, 4, [state])
    assert len(notes) == 1 and "1 shard(s) added (c4-train.00003-of-00004.json.gz)" in notes[0]
    resumed, got = epoch_of_texts(config, tokenizer, state, batches=150)
    # the epoch under way finishes exactly as before the shard was added
    epoch_batches = _batches_in_epoch(config, tokenizer, state)
    assert epoch_batches > 3
    for (x, _), (rx, _) in zip(expected[:epoch_batches], got[:epoch_batches], strict=True):
        assert torch.equal(x, rx)
    later = resumed.state_dict()["readers"][0]["position"]
    assert later["epoch"] >= 1 and later["list"] != position["list"]


def _batches_in_epoch(config, tokenizer, state) -> int:
    """Batches a restored loader yields before its reader enters the next epoch."""
    loader = TrainLoader(config, tokenizer, micro_batch_size=2, seed=4)
    loader.load_state_dict(state)
    count = 0
    while True:
        next(loader)
        if loader.state_dict()["readers"][0]["position"]["epoch"] > 0:
            return count
        count += 1


def test_a_missing_shard_the_epoch_still_needs_is_refused(
    tmp_path, write_shard, tokenizer, documents
):
    for i in range(3):
        write_shard(
            tmp_path / f"c4-train.{i:05d}-of-00003.json.gz", documents[i * 20 : i * 20 + 20]
        )
    config = data(tmp_path, shuffle=False)
    loader, _ = epoch_of_texts(config, tokenizer, batches=3)
    state = json.loads(json.dumps(loader.state_dict()))
    (tmp_path / "c4-train.00002-of-00003.json.gz").unlink()
    with pytest.raises(DataError, match="1 that the current epoch has still to read") as info:
        check_resume_data(config, 4, [state])
    assert "c4-train.00002-of-00003.json.gz" in str(info.value)
