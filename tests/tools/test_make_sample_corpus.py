"""Tests for tools/make_sample_corpus.py, run as a subprocess like a user would."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "make_sample_corpus.py"
NAMES = [f"c4-train.{i:05d}-of-00004.json.gz" for i in range(4)] + [
    "c4-validation.00000-of-00001.json.gz"
]


def generate(out: Path, seed: int) -> dict[str, bytes]:
    """Runs the script with small sizes and returns the bytes of each file written."""
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--seed", str(seed)]
        + ["--train-shards", "4", "--docs-per-shard", "20", "--validation-docs", "10"],
        check=True,
        capture_output=True,
    )
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def texts(data: bytes) -> list[str]:
    """Parses one gzipped JSON-lines file, checking the C4 record layout."""
    records = [json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines()]
    for record in records:
        assert set(record) == {"text", "timestamp", "url"}
        assert record["text"].strip()
    return [record["text"] for record in records]


def test_files_and_records(tmp_path: Path) -> None:
    files = generate(tmp_path / "a", seed=1234)
    assert sorted(files) == sorted(NAMES)
    counts = {name: len(texts(data)) for name, data in files.items()}
    assert counts == {**{name: 20 for name in NAMES[:4]}, NAMES[4]: 10}


def test_deterministic_per_seed(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", seed=7)
    assert generate(tmp_path / "b", seed=7) == first
    other = generate(tmp_path / "c", seed=8)
    assert all(other[name] != first[name] for name in NAMES)


def test_validation_not_in_train(tmp_path: Path) -> None:
    files = generate(tmp_path / "a", seed=1234)
    train = {text for name in NAMES[:4] for text in texts(files[name])}
    assert not train & set(texts(files[NAMES[4]]))
