"""Reading metrics.jsonl: the one reader every tool uses.

A run appends one JSON object per line and flushes after each, so a reader may meet a
line being written (the last one, without its newline), and a disk that filled up or a
crash may have left a torn line anywhere. Neither stops a reader: torn lines are
skipped and counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Metrics:
    """The records of a metrics file.

    Attributes:
        records: One dict per good line, in file order.
        bad_lines: Line numbers (1-based) of complete lines that are not JSON objects.
        partial: True when the last line had no newline and did not parse (being written).
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)
    partial: bool = False


def read_metrics(path: str | Path) -> Metrics:
    """Reads a metrics.jsonl file; a missing file has no records.

    Args:
        path: The metrics file.

    Returns:
        Its records, and which lines were skipped.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return Metrics()
    lines = text.split("\n")
    metrics = Metrics()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = parse_record(line)
        if record is not None:
            metrics.records.append(record)
        elif number == len(lines):  # the text after the last newline
            metrics.partial = True
        else:
            metrics.bad_lines.append(number)
    return metrics


def parse_record(line: str) -> dict[str, Any] | None:
    """One line's record, or None when it is not a JSON object (a torn line)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def record_step(record: dict[str, Any]) -> int:
    """The step a record belongs to (0 when it names none or a non-number)."""
    step = record.get("step", 0)
    return step if isinstance(step, int) else 0
