"""tools/bench_plan.py: a real run's measured peak against the plan of its config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_one_world_is_measured_and_the_plan_is_within_fifteen_percent(
    tmp_path, subprocess_env, sample_tokenizer
):
    out = tmp_path / "table.md"
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/bench_plan.py"), "--presets", "60m", "--stages", "2",
         "--processes", "1", "--tokenizer", str(sample_tokenizer.path), "--out", str(out)],
        env=subprocess_env, capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = [line for line in out.read_text().splitlines() if line.startswith("| 60m")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    plan, measured = float(cells[4].split()[0]), float(cells[5].split()[0])
    assert measured > 300  # the model states of 26M parameters were really allocated
    assert float(cells[6]) == pytest.approx(plan / measured, abs=0.01)
    assert 0.85 <= plan / measured <= 1.15, row
