"""Weights & Biases in real runs, offline: one W&B run per run folder across a resume,
steps that never go back, a rewind in a W&B run of its own, the connection matrix and
the block statistics as media, the flattened config, and credentials checked first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ancre.sweep.expand import load_sweep
from tests.helpers.training import REPO, cli_error, train_args, train_run
from tests.helpers.wandb_files import history, logged_config

pytestmark = pytest.mark.slow

WANDB = (
    "logging.wandb=offline", "checkpoint.every=3", "checkpoint.topology_every=3",
    "train.block_stats_every=3", "train.log_every=1", "eval.every=3",
)  # fmt: skip


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


@pytest.fixture(scope="module")
def timelines(tmp_path_factory, subprocess_env, sample_tokenizer):
    """A 6-step run, the same run extended to 9 steps, then rewound to step 3."""
    out = tmp_path_factory.mktemp("wandb")
    run_dir, tokenizer, seen = out / "r", sample_tokenizer.path, []
    for extra in (["train.steps=6"], ["train.steps=9"]):
        train_run(*train_args(out, "r", tokenizer, *WANDB, *extra), env=subprocess_env)
        seen.append(json.loads((run_dir / "wandb" / "run.json").read_text()))
    rewind = f"checkpoint.resume={run_dir / 'checkpoints' / 'step_00000003'}"
    result = train_run(
        *train_args(out, "r", tokenizer, *WANDB, "train.steps=9", rewind), env=subprocess_env
    )  # fmt: skip
    seen.append(json.loads((run_dir / "wandb" / "run.json").read_text()))
    return run_dir, seen, result.stderr


def test_a_resumed_run_continues_its_w_and_b_run_and_its_steps(timelines) -> None:
    run_dir, seen, _ = timelines
    first, extended = seen[0], seen[1]
    assert extended == first and first["earlier"] == []
    runs = offline_runs(run_dir)
    assert [r.name.rsplit("-", 1)[1] for r in runs[:2]] == [first["id"]] * 2
    steps = [row["_step"] for run in runs[:2] for row in history(run)]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 9  # never back


def test_a_rewound_run_goes_to_a_new_w_and_b_run_of_the_same_group(timelines) -> None:
    run_dir, seen, log = timelines
    rewound = seen[2]
    assert rewound["id"] != seen[0]["id"] and rewound["earlier"] == [seen[0]["id"]]
    third = offline_runs(run_dir)[2]
    assert third.name.endswith(rewound["id"])
    steps = [row["_step"] for row in history(third)]
    assert steps[0] == 3 and steps == sorted(steps)
    assert f"W&B run {seen[0]['id']} keeps the points of the timeline set aside" in log


def test_the_matrix_the_block_statistics_and_the_config_reach_w_and_b(timelines) -> None:
    run_dir, seen, _ = timelines
    rows = history(offline_runs(run_dir)[0])
    media = {row["_step"]: row for row in rows if "topology/matrix/_type" in row}
    assert sorted(media) == [0, 3, 6]  # checkpoint.topology_every, and the start and end
    assert media[3]["topology/matrix/_type"] == "image-file"
    assert media[3]["topology/entries/_type"] == "table-file"
    assert media[3]["topology/entries/nrows"] == 6 * 7  # every entry of the 6 x 7 matrix
    stats = [row for row in rows if "block_stats/state_rms_table/_type" in row]
    assert [row["_step"] for row in stats] == [0, 3, 6]
    assert all(isinstance(row["block_stats/state_rms_last"], float) for row in stats)
    assert any("val_loss" in row for row in rows) and any("loss" in row for row in rows)
    config = logged_config(offline_runs(run_dir)[0])
    assert config["train.steps"] == 6 and config["topology.kind"] == "ancre"  # flattened
    assert config["logging.wandb_group"] is None  # (the W&B group fell back to the name)


def test_online_without_credentials_fails_before_anything(
    tmp_path, capsys, monkeypatch, sample_tokenizer
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    line = cli_error(
        capsys, "train", *train_args(tmp_path, "r", sample_tokenizer.path, "logging.wandb=online")
    )
    assert "logging.wandb: is online, but no W&B credentials are here" in line
    assert not (tmp_path / "r").exists()


def test_a_sweep_sets_the_group_and_job_type() -> None:
    sweep = load_sweep(REPO / "configs" / "sweeps" / "text_recipe.yaml")
    labels = {(r.config.logging.wandb_group, r.config.logging.wandb_job_type) for r in sweep.runs}
    assert labels == {
        ("text_recipe", f"kind={kind} {recipe}")
        for kind in ("cascaded", "uniform", "ancre")
        for recipe in ("classic", "modern")
    }  # the seeds of one setting share a job type


def test_a_run_without_wandb_never_imports_it(subprocess_env):
    """W&B's import (half a second) is paid only by runs that log to it."""
    code = (
        "import sys; import ancre.cli, ancre.train.commands, ancre.train.run; "
        "print('wandb' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
