"""Tests for ancre/atomic.py: whole-file writes by temporary file and rename."""

from __future__ import annotations

import json
from pathlib import Path

from ancre.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic


def test_bytes_written_without_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    write_bytes_atomic(path, bytes(range(256)) * 4)
    assert path.read_bytes() == bytes(range(256)) * 4
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_existing_file_replaced(tmp_path: Path) -> None:
    path = tmp_path / "latest"
    path.write_text("step_00000001 and a much longer old content\n")
    write_text_atomic(str(path), "step_00000002\n")
    assert path.read_text() == "step_00000002\n"
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]


def test_text_is_utf8(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    write_text_atomic(path, "Ancre ✓ ü")
    assert path.read_bytes() == "Ancre ✓ ü".encode()


def test_json_round_trip(tmp_path: Path) -> None:
    obj = {"step": 3, "matrix": [[1.0, 0.0], [0.5, 0.5]], "name": None}
    path = tmp_path / "state.json"
    write_json_atomic(path, obj)
    write_json_atomic(path, {**obj, "step": 4})
    assert json.loads(path.read_text()) == {**obj, "step": 4}
    assert path.read_text().endswith("\n")
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
