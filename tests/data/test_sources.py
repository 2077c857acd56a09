"""Tests for ancre/data/sources.py: finding shards and reading documents from them."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import datasets
import pytest

from ancre.data.sources import MissingDataError, StreamingDocuments, find_shards, iter_documents

TRAIN = ["c4-train.00000-of-00002.json.gz", "c4-train.00001-of-00002.json.gz"]
VALID = "c4-validation.00000-of-00001.json.gz"


def make_tree(root: Path, write_shard) -> None:
    """Two train shards in different subfolders (path order != name order), one validation."""
    write_shard(root / "b" / TRAIN[0], ["first"])
    write_shard(root / "a" / TRAIN[1], ["second"])
    write_shard(root / VALID, ["held out"])
    (root / "c4-train-notes.txt").write_text("not a shard")


def test_find_shards_in_folder_by_split_and_name(tmp_path: Path, write_shard) -> None:
    make_tree(tmp_path, write_shard)
    train = find_shards(str(tmp_path), "train")
    assert [p.name for p in train] == TRAIN
    assert train[0] == tmp_path / "b" / TRAIN[0]
    assert find_shards(str(tmp_path), "validation") == [tmp_path / VALID]


def test_find_shards_glob_and_single_file(tmp_path: Path, write_shard) -> None:
    make_tree(tmp_path, write_shard)
    assert [p.name for p in find_shards(f"{tmp_path}/**/*.json.gz", "train")] == TRAIN
    assert find_shards(f"{tmp_path}/a/*.json.gz", "train") == [tmp_path / "a" / TRAIN[1]]
    single = tmp_path / VALID
    assert find_shards(str(single), "validation") == [single]
    with pytest.raises(MissingDataError, match="the file"):
        find_shards(str(single), "train")


def test_find_shards_accepts_jsonl(tmp_path: Path, write_shard) -> None:
    shard = write_shard(tmp_path / "c4-train.00000-of-00001.jsonl", ["plain"])
    assert find_shards(str(tmp_path), "train") == [shard]
    assert list(iter_documents([shard], "text", Counter())) == ["plain"]


def test_find_shards_missing_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    with pytest.raises(MissingDataError) as info:
        find_shards(missing, "train")
    assert missing in str(info.value)


def test_find_shards_glob_matching_nothing(tmp_path: Path, write_shard) -> None:
    write_shard(tmp_path / VALID, ["held out"])
    for pattern in (f"{tmp_path}/nothing-*.json.gz", f"{tmp_path}/*.json.gz"):
        with pytest.raises(MissingDataError) as info:
            find_shards(pattern, "train")
        assert pattern in str(info.value) and "train" in str(info.value)
    with pytest.raises(MissingDataError, match="the folder"):
        find_shards(str(tmp_path), "train")


def test_iter_documents_reads_shards_in_order(tmp_path: Path, write_shard, documents) -> None:
    first = write_shard(tmp_path / TRAIN[0], documents[:120])
    second = write_shard(tmp_path / TRAIN[1], documents[120:])
    skipped: Counter[str] = Counter()
    assert list(iter_documents([first, second], "text", skipped)) == documents
    assert not skipped


BAD_LINES = [
    ("malformed_json", b'{"text": "unterminated'),
    ("missing_field", json.dumps({"url": "https://example.org"}).encode()),
    ("missing_field", json.dumps({"text": 42}).encode()),
    ("invalid_utf8", b'{"text": "caf\xe9 latin-1"}'),
    ("empty", json.dumps({"text": "  \n "}).encode()),
]


@pytest.mark.parametrize("reason, bad", BAD_LINES)
def test_iter_documents_skips_and_counts(tmp_path, write_lines, caplog, reason, bad) -> None:
    good = [json.dumps({"text": t}) for t in ("alpha", "beta", "gamma")]
    shard = write_lines(tmp_path / TRAIN[0], [good[0], good[1], bad, good[2]])
    skipped: Counter[str] = Counter()
    with caplog.at_level(logging.WARNING, logger="ancre.data.sources"):
        assert list(iter_documents([shard], "text", skipped)) == ["alpha", "beta", "gamma"]
    assert skipped == Counter({reason: 1})
    assert f"{shard}:3" in caplog.text and reason in caplog.text


def test_iter_documents_counts_every_reason_once(tmp_path: Path, write_lines) -> None:
    lines = [bad for _, bad in BAD_LINES] + [json.dumps({"text": "kept"})]
    shard = write_lines(tmp_path / "c4-train.00000-of-00001.jsonl", lines)
    skipped: Counter[str] = Counter()
    assert list(iter_documents([shard], "text", skipped)) == ["kept"]
    assert skipped == Counter(reason for reason, _ in BAD_LINES)


def test_iter_documents_other_text_field(tmp_path: Path, write_lines) -> None:
    lines = [json.dumps({"body": "wanted", "text": "other"}), json.dumps({"text": "no body"})]
    shard = write_lines(tmp_path / TRAIN[0], lines)
    skipped: Counter[str] = Counter()
    assert list(iter_documents([shard], "body", skipped)) == ["wanted"]
    assert skipped == Counter({"missing_field": 1})


def test_iter_documents_truncated_gzip(tmp_path, write_shard, documents, caplog) -> None:
    whole = write_shard(tmp_path / TRAIN[0], documents[:150])
    cut = tmp_path / "c4-train.cut.json.gz"
    cut.write_bytes(whole.read_bytes()[:-300])
    with pytest.raises(EOFError):
        gzip.decompress(cut.read_bytes())
    after = write_shard(tmp_path / TRAIN[1], ["after the cut"])
    skipped: Counter[str] = Counter()
    with caplog.at_level(logging.WARNING, logger="ancre.data.sources"):
        read = list(iter_documents([cut, after], "text", skipped))
    assert read[-1] == "after the cut"
    assert 0 < len(read) - 1 < 150 and read[:-1] == documents[: len(read) - 1]
    assert skipped == Counter({"truncated_file": 1})
    assert str(cut) in caplog.text and "truncated_file" in caplog.text


# --- streaming (hub) sources, exercised offline with a local streaming dataset ---


def streaming_dataset(tmp_path, write_lines, count: int) -> datasets.IterableDataset:
    lines = [json.dumps({"text": f"doc {i}"}) for i in range(count)]
    files = [
        write_lines(tmp_path / "part0.jsonl", lines[: count // 2]),
        write_lines(tmp_path / "part1.jsonl", lines[count // 2 :]),
    ]
    return datasets.load_dataset(
        "json", data_files=[str(f) for f in files], split="train", streaming=True
    )


def test_streaming_readers_cover_every_document_once(tmp_path, write_lines) -> None:
    dataset = streaming_dataset(tmp_path, write_lines, 17)
    seen = []
    for reader in range(3):
        source = StreamingDocuments(dataset, "text", reader, 3)
        for text, position in source.documents(None, Counter()):
            if position["epoch"] > 0:
                break
            seen.append(text)
    assert sorted(seen) == sorted(f"doc {i}" for i in range(17))


def test_streaming_resumes_from_a_position_and_starts_each_epoch_over(tmp_path, write_lines):
    dataset = streaming_dataset(tmp_path, write_lines, 10)
    stream = StreamingDocuments(dataset, "text").documents(None, Counter())
    first = [next(stream) for _ in range(4)]
    rest = [next(stream)[0] for _ in range(16)]
    position = json.loads(json.dumps(first[-1][1]))
    resumed = StreamingDocuments(dataset, "text").documents(position, Counter())
    assert [next(resumed)[0] for _ in range(16)] == rest
    assert rest[6:16] == [f"doc {i}" for i in range(10)]  # epoch 1 reads everything again


def test_unreachable_hub_fails_at_once_offline(subprocess_env) -> None:
    code = "from ancre.data.sources import open_hub; open_hub('allenai/c4', 'en', 'train')"
    env = dict(subprocess_env, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert time.monotonic() - started < 60
    assert result.returncode != 0
    assert "MissingDataError" in result.stderr and "data.source=local data.path=" in result.stderr


@pytest.mark.slow
def test_unreachable_hub_fails_within_a_minute(subprocess_env) -> None:
    code = "from ancre.data.sources import open_hub; open_hub('allenai/c4', 'en', 'train')"
    env = {k: v for k, v in subprocess_env.items() if not k.startswith(("HF_HUB_", "HF_DATASETS_"))}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - started
    if result.returncode == 0:
        pytest.skip("the hub is reachable from this machine")
    assert elapsed < 75, f"took {elapsed:.0f} s"
    assert "cannot stream allenai/c4" in result.stderr
