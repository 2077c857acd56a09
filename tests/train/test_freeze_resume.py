"""Learn, then freeze, through real DeepSpeed runs: exact resume and kills across the freeze."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ancre
from ancre.config import load_config
from ancre.data.tokenizer import Tokenizer
from ancre.data.validation import validation_set
from tests.helpers.training import records, run_ancre, train_args
from tests.train.test_resume import kill_when, logged_step, start

pytestmark = pytest.mark.slow

FREEZE = ["train.steps=12", "checkpoint.every=2", "topology.freeze_at=6",
          "topology.prune=top_k", "topology.prune_k=2"]  # fmt: skip


def snapshots(run_dir: Path) -> dict[int, dict]:
    files = sorted((run_dir / "topology").glob("step_*.json"))
    return {int(f.stem.removeprefix("step_")): json.loads(f.read_text()) for f in files}


@pytest.fixture(scope="module", params=[0, 3], ids=lambda z: f"zero{z}")
def frozen_run(request, tmp_path_factory, subprocess_env, sample_tokenizer):
    """An uninterrupted 12-step run frozen at step 6, checkpoints every 2 steps."""
    out = tmp_path_factory.mktemp("frozen")
    zero = f"train.zero_stage={request.param}"
    args = train_args(out, "ref", sample_tokenizer.path, *FREEZE, zero)
    result = run_ancre("train", *args, env=subprocess_env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "topology frozen at step 6 (topology.prune=top_k): 11 of 21" in result.stderr
    return out / "ref", args


def test_the_matrix_freezes_pruned_and_its_logits_stop_moving(frozen_run):
    run_dir, _ = frozen_run
    taken = snapshots(run_dir)
    assert [s for s in taken if taken[s]["frozen_at"] is None] == [0, 2, 4]
    frozen = [taken[s] for s in (6, 8, 10, 12)]
    assert all(s["logits"] == frozen[0]["logits"] and s["matrix"] == frozen[0]["matrix"]
               for s in frozen)  # fmt: skip
    assert taken[4]["logits"] != frozen[0]["logits"]  # they were learning before
    assert [len(row) for row in frozen[0]["edges"]] == [1, 2, 2, 2, 2, 2]
    for row, kept in zip(frozen[0]["matrix"], frozen[0]["edges"], strict=True):
        assert sum(row) == pytest.approx(1.0) and all(v == 0 for i, v in enumerate(row)
                                                       if i not in kept)  # fmt: skip


@pytest.mark.parametrize("resume_step", [4, 8], ids=["before-freeze", "after-freeze"])
def test_resumed_across_the_freeze_equals_the_uninterrupted_run(
    frozen_run, resume_step, subprocess_env, tmp_path
):
    run_dir, args = frozen_run
    checkpoint = run_dir / "checkpoints" / f"step_{resume_step:08d}"
    resumed = [*args, f"run.out_dir={tmp_path}", f"checkpoint.resume={checkpoint}"]
    result = run_ancre("train", *resumed, env=subprocess_env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert records(tmp_path / "ref") == [r for r in records(run_dir) if r["step"] > resume_step]
    later = {s: v for s, v in snapshots(run_dir).items() if s > resume_step}
    assert snapshots(tmp_path / "ref") == later


def test_killed_after_the_freeze_resumes_exactly(frozen_run, subprocess_env, tmp_path):
    run_dir, args = frozen_run
    args = [*args, f"run.out_dir={tmp_path}"]
    popen = start(args, subprocess_env)
    assert kill_when(popen, lambda: logged_step(tmp_path / "ref") >= 9)
    result = run_ancre("train", *args, env=subprocess_env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "topology frozen at step 6" in result.stderr  # frozen again on resume
    assert records(tmp_path / "ref") == records(run_dir)
    assert snapshots(tmp_path / "ref") == snapshots(run_dir)


def test_converted_frozen_model_gives_the_training_loss(frozen_run, subprocess_env, tmp_path):
    run_dir, _ = frozen_run
    out = tmp_path / "converted"
    convert = [sys.executable, "-m", "ancre.cli", "convert",
               str(run_dir / "checkpoints" / "step_00000012"), str(out)]  # fmt: skip
    result = subprocess.run(convert, env=subprocess_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    model = ancre.load_pretrained(out)
    assert model.topology.frozen_at == 6 and model.topology.wiring.num_edges == 11
    config = load_config(out / "config.yaml")
    inputs, targets = validation_set(config.data, Tokenizer(out / "tokenizer.model"), 1024)
    with torch.no_grad():
        loss = float(model(inputs, targets))
    final = [r for r in records(run_dir) if "val_loss" in r][-1]["val_loss"]
    assert loss == pytest.approx(final, rel=1e-5)
