"""Metric sinks: metrics.jsonl always, Weights & Biases when asked for."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Protocol

import wandb


class MetricsSink(Protocol):
    """Receives one record per event."""

    def log(self, record: dict[str, Any]) -> None:
        """Stores one record (it always has a ``step``)."""

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

    def close(self) -> None:
        """Closes the file."""
        self._file.close()


class WandbSink:
    """Logs records to a Weights & Biases run (offline files live in the run folder)."""

    def __init__(
        self, mode: str, project: str, name: str, files_dir: Path, config: dict[str, Any]
    ) -> None:
        """Starts the wandb run.

        Args:
            mode: ``offline`` or ``online``.
            project: The wandb project.
            name: The run's name.
            files_dir: The run folder's ``wandb/`` (wandb writes ``<its parent>/wandb``).
            config: The resolved config, logged with the run.
        """
        if mode == "offline":
            os.environ["WANDB_MODE"] = "offline"  # also stops the online telemetry thread
        os.environ.setdefault("WANDB_CACHE_DIR", str(files_dir / "cache"))
        files_dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            mode=mode, project=project, name=name, dir=str(files_dir.parent), config=config
        )

    def log(self, record: dict[str, Any]) -> None:
        """Logs the record's values at its step."""
        values = {k: v for k, v in record.items() if k != "step" and isinstance(v, int | float)}
        self._run.log(values, step=record["step"])

    def close(self) -> None:
        """Finishes the wandb run."""
        self._run.finish()


class MetricsLogger:
    """Fans each record out to every sink."""

    def __init__(self, sinks: list[MetricsSink]) -> None:
        self.sinks = sinks

    def log(self, record: dict[str, Any]) -> None:
        """Sends one record to every sink."""
        for sink in self.sinks:
            sink.log(record)

    def close(self) -> None:
        """Closes every sink."""
        for sink in self.sinks:
            sink.close()
