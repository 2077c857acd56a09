"""Metric sinks: metrics.jsonl always, Weights & Biases when asked for (wandb_sink.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

from ancre.snapshot import TopologySnapshot


class MetricsSink(Protocol):
    """Receives one record per event."""

    def log(self, record: dict[str, Any]) -> None:
        """Stores one record (it always has a ``step``)."""

    def log_topology(self, snapshot: TopologySnapshot) -> None:
        """Stores a topology snapshot, or leaves it to the run folder's topology/."""

    def close(self) -> None:
        """Flushes and releases the sink."""


class JsonlSink:
    """Appends one JSON object per line to a file, flushed after every record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        """Appends a record; non-finite floats are written as null (valid JSON)."""
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()
        }
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()

    def log_topology(self, snapshot: TopologySnapshot) -> None:
        """Takes nothing: the snapshot has its own file under the run folder's topology/."""

    def close(self) -> None:
        """Closes the file."""
        self._file.close()


class MetricsLogger:
    """Fans each record out to every sink."""

    def __init__(self, sinks: list[MetricsSink]) -> None:
        self.sinks = sinks

    def log(self, record: dict[str, Any]) -> None:
        """Sends one record to every sink."""
        for sink in self.sinks:
            sink.log(record)

    def log_topology(self, snapshot: TopologySnapshot) -> None:
        """Sends a topology snapshot to every sink (W&B draws it; metrics.jsonl skips it)."""
        for sink in self.sinks:
            sink.log_topology(snapshot)

    def close(self) -> None:
        """Closes every sink."""
        for sink in self.sinks:
            sink.close()
