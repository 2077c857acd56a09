"""Fixtures of the visualiser tests: run folders written on the spot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ancre.snapshot import write_snapshot
from tests.helpers.viz_builders import make_snapshot, metrics_lines


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Writes a run folder: one snapshot per matrix (steps 0, 10, ...) and metrics."""

    def make(
        name: str,
        matrices: list[list[list[float]]],
        kind: str = "softmax",
        records: list[dict] | None = None,
        partial_line: str = "",
    ) -> Path:
        run = tmp_path / name
        (run / "topology").mkdir(parents=True)
        for k, matrix in enumerate(matrices):
            step = 10 * k
            write_snapshot(
                make_snapshot(matrix, step, kind), run / f"topology/step_{step:08d}.json"
            )
        records = (
            metrics_lines([10 * k for k in range(max(len(matrices), 2))])
            if records is None
            else records
        )
        text = "".join(json.dumps(r) + "\n" for r in records) + partial_line
        (run / "metrics.jsonl").write_text(text)
        return run

    return make
