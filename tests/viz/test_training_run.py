"""`ancre viz` on a real tiny training run, and on an Ancre run compared with itself."""

import json
from pathlib import Path

import pytest

from tests.helpers.report_checks import check_report
from tests.helpers.training import run_ancre, train_args, train_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, subprocess_env, sample_tokenizer) -> Path:
    out = tmp_path_factory.mktemp("runs")
    args = train_args(
        out, "r", sample_tokenizer.path, "train.steps=30", "train.warmup_steps=3",
        "checkpoint.topology_every=10", "eval.every=10", "eval.tokens=2048", "checkpoint.every=0",
        "train.block_stats_every=10",
    )  # fmt: skip
    train_run(*args, env=subprocess_env)
    return out / "r"


@pytest.mark.slow
def test_report_of_a_trained_run(trained_run, tmp_path, subprocess_env):
    out = tmp_path / "report"
    result = run_ancre(
        "viz", str(trained_run), "--out", str(out), "--compare", str(trained_run),
        env=subprocess_env, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    check_report(out)
    summary = json.loads((out / "summary.json").read_text())
    (run, same) = summary["runs"]
    assert run["blocks L"] > 1 and run["snapshots"] == 4 and run["last step"] == 30
    assert run["final val_loss"] < 7.0
    # a run reaches its own final val_loss in exactly as many steps
    assert summary["comparisons"][0]["step_ratio"] == 1.0
    assert "as many steps as" in result.stdout
    rows = (out / "block_statistics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * run["blocks L"]
    # the residual stream's statistics (steps 0, 10, 20, 30) against depth and over training
    page = (out / "report.html").read_text()
    assert "The residual stream against depth" in page and (out / "stream_depth.png").exists()
    assert (out / "stream_training.png").exists()
