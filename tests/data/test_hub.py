"""Tests for ancre/data/hub.py, exercised offline with a local streaming dataset."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter

import datasets
import pytest

from ancre.data.hub import StreamingDocuments


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
    code = "from ancre.data.hub import open_hub; open_hub('allenai/c4', 'en', 'train')"
    env = dict(subprocess_env, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert time.monotonic() - started < 60
    assert result.returncode != 0
    assert "MissingDataError" in result.stderr and "data.source=local data.path=" in result.stderr


@pytest.mark.slow
def test_unreachable_hub_fails_within_a_minute(subprocess_env) -> None:
    code = "from ancre.data.hub import open_hub; open_hub('allenai/c4', 'en', 'train')"
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
