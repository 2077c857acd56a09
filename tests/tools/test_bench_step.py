"""tools/bench_step.py times a frozen, pruned Ancre and the forms beside the three topologies."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_bench_step_times_the_frozen_model(subprocess_env) -> None:
    command = [
        sys.executable, str(REPO / "tools" / "bench_step.py"), "--preset", "tiny",
        "--layers", "4", "--seq-len", "16", "--micro-batch", "2", "--vocab-size", "64",
        "--steps", "1", "--warmup", "1", "--threads", "1", "--frozen", "top_k", "--prune-k", "1",
        "--forms", "--set", "model.hidden_size=64", "--set", "model.num_heads=2",
        "--block-stats", "50",
    ]  # fmt: skip
    result = subprocess.run(command, env=subprocess_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ancre_frozen: pruned by top_k, 4 of 10 connections kept" in result.stdout
    assert "L=4 D=64" in result.stdout  # --set reached the models
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("per-block statistics"))
    costs = [line.split() for line in lines[header + 1 :]]
    assert len(costs) == 8 and all(row[2:5] == ["ms", "per", "record,"] for row in costs)
    rows = [line.split() for line in lines[header - 8 : header]]
    assert [row[0] for row in rows] == [
        "cascaded", "ancre", "uniform", "ancre:replace", "uniform:replace", "ancre:gated",
        "uniform:gated", "ancre_frozen",
    ]  # fmt: skip
    assert all(row[3:5] == ["n/a", "n/a"] and row[6] == "n/a" for row in rows)  # no CPU peak


def test_bench_step_zoo_prints_every_wiring(subprocess_env) -> None:
    command = [
        sys.executable, str(REPO / "tools" / "bench_step.py"), "--zoo", "--presets", "tiny",
        "--seq-len", "16", "--micro-batch", "2", "--vocab-size", "64", "--steps", "1",
        "--warmup", "0", "--threads", "1",
    ]  # fmt: skip
    result = subprocess.run(command, env=subprocess_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("wiring"))
    rows = {line.split()[0]: line.split() for line in lines[header + 1 :] if line.strip()}
    assert list(rows) == ["cascaded", "ancre", "uniform", "denseformer", "hyper",
                          "hyper-dynamic", "mhc", "attnres", "attnres-block2", "attnres-delta",
                          "speedrun-x0", "ancre+laurel", "ancre+vres", "mudd", "mudd-sw",
                          "frac", "frac-dynamic"]  # fmt: skip
    assert rows["cascaded"][1] == "0" and rows["cascaded"][4] == "1.000x"
    learned = [row for name, row in rows.items() if name not in ("cascaded", "uniform")]
    assert rows["uniform"][1] == "0" and all(int(row[1].replace(",", "")) > 0 for row in learned)
