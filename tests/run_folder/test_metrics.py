"""Tests for ancre/run_folder/metrics.py: the one tolerant metrics reader."""

from __future__ import annotations

from ancre.run_folder import read_metrics


def test_partial_last_line_is_ignored(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "val_loss": 1.5}\n{"step": 3, "lo')
    metrics = read_metrics(path)
    assert metrics.records == [{"step": 1, "loss": 2.0}, {"step": 2, "val_loss": 1.5}]
    assert metrics.partial and metrics.bad_lines == []


def test_torn_lines_anywhere_are_skipped_and_counted(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n{oops\n\xff\xfe\n[1, 2]\n\n{"step": 2}\n')
    metrics = read_metrics(path)
    assert metrics.records == [{"step": 1}, {"step": 2}]
    assert metrics.bad_lines == [2, 3, 4] and not metrics.partial


def test_missing_file_has_no_records(tmp_path):
    assert read_metrics(tmp_path / "none.jsonl").records == []
