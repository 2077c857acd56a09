"""tools/bench_step.py times a frozen, pruned Ancre beside the three topologies."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_bench_step_times_the_frozen_model(subprocess_env) -> None:
    command = [
        sys.executable, str(REPO / "tools" / "bench_step.py"), "--preset", "tiny",
        "--seq-len", "16", "--micro-batch", "2", "--vocab-size", "64", "--steps", "1",
        "--warmup", "1", "--threads", "1", "--frozen", "top_k", "--prune-k", "1",
    ]  # fmt: skip
    result = subprocess.run(command, env=subprocess_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ancre_frozen: pruned by top_k, 6 of 21 connections kept" in result.stdout
    rows = [line.split()[0] for line in result.stdout.splitlines()[-4:]]
    assert rows == ["cascaded", "ancre", "uniform", "ancre_frozen"]
