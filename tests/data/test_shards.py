"""Tests for ancre/data/shards.py: finding shards, reading documents, skipping bad input."""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from ancre.data.shards import MissingDataError, find_shards, iter_documents, parse_line
from ancre.data.sources import SKIP_REASONS

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
    ("invalid_text", b'{"text": "a lone surrogate \\ud800 here"}'),
    ("malformed_json", b"[" * 200_000 + b"]" * 200_000),
    ("malformed_json", b'{"text": "fine", "n": ' + b"7" * 5000 + b"}"),
]


@pytest.mark.parametrize("reason, bad", BAD_LINES)
def test_iter_documents_skips_and_counts(tmp_path, write_lines, caplog, reason, bad) -> None:
    good = [json.dumps({"text": t}) for t in ("alpha", "beta", "gamma")]
    shard = write_lines(tmp_path / TRAIN[0], [good[0], good[1], bad, good[2]])
    skipped: Counter[str] = Counter()
    with caplog.at_level(logging.WARNING, logger="ancre.data.shards"):
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
    with caplog.at_level(logging.WARNING, logger="ancre.data.shards"):
        read = list(iter_documents([cut, after], "text", skipped))
    assert read[-1] == "after the cut"
    assert 0 < len(read) - 1 < 150 and read[:-1] == documents[: len(read) - 1]
    assert skipped == Counter({"truncated_file": 1})
    assert str(cut) in caplog.text and "truncated_file" in caplog.text


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "invalid_utf8"),
        (b"{not json", "malformed_json"),
        (b'{"body": "x"}', "missing_field"),
        (b'{"text": "\\ud800"}', "invalid_text"),
        (b'{"text": "  "}', "empty"),
    ],
)
def test_parse_line_names_the_reason_of_a_skip(raw, reason):
    text, skip = parse_line(raw, "text")
    assert text is None and skip is not None
    assert skip.reason == reason and skip.reason in SKIP_REASONS and skip.detail


def test_parse_line_gives_the_text_of_a_good_line():
    assert parse_line(b'{"text": "a document"}', "text") == ("a document", None)
