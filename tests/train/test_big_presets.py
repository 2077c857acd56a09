"""The 350m preset really steps: 2 steps at ZeRO-3 over 2 gloo processes, a checkpoint,
its universal form and a resume on 1 process at ZeRO 0 whose weights and Adam moments
are the checkpoint's, bit for bit, and whose first step has the uninterrupted loss
(real DeepSpeed, real files; about 4 minutes, 10 GB of memory and 15 GB of disk on two
cores, so the suite runs it only when asked: ANCRE_SCALE_TESTS=1 ./tests/run.sh
tests/train/test_big_presets.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.helpers.training import records, run_ancre, train_args

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("ANCRE_SCALE_TESTS") != "1",
        reason="the 350m preset takes 4 minutes and 15 GB of disk: ANCRE_SCALE_TESTS=1 runs it",
    ),
]

DISK_NEEDED = 20 * 10**9
"""The ZeRO-3 checkpoint, its universal form and the resumed run's checkpoint, with room."""
ONE = ["train.zero_stage=0", "data.num_workers=2"]
"""One process at ZeRO 0; two loader workers keep the 2 processes' 2 readers."""
LOSS_RTOL = 1e-5
"""As in test_reshard.py: the same weights and sequences, fp32 sums in another order."""
BIG = [
    "model.preset=350m", "train.zero_stage=3", "data.seq_len=128", "train.micro_batch_size=1",
    "train.global_batch_size=2", "train.steps=3", "train.warmup_steps=1", "eval.every=0",
    "eval.tokens=256", "checkpoint.every=2", "checkpoint.topology_every=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory, subprocess_env, sample_tokenizer):
    """3 uninterrupted steps over 2 processes at ZeRO-3 (checkpoint at step 2), then step
    2 resumed on 1 process at ZeRO 0."""
    out = tmp_path_factory.mktemp("big")
    if shutil.disk_usage(out).free < DISK_NEEDED:
        pytest.skip(f"the 350m checkpoints need {DISK_NEEDED / 1e9:.0f} GB free in {out}")
    args = train_args(out, "ref", sample_tokenizer.path, *BIG)
    result = run_ancre("train", *args, env=subprocess_env, processes=2, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "model: 24 blocks, hidden 1024" in result.stderr  # the 350m preset, no stand-in
    source = out / "ref" / "checkpoints" / "step_00000002"
    resumed = [*args, "run.name=one", f"checkpoint.resume={source}", *ONE]
    result = run_ancre("train", *resumed, env=subprocess_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return out, source


def test_the_350m_preset_resumes_on_one_process_with_the_uninterrupted_loss(run):
    out, _ = run
    expected = next(r for r in records(out / "ref") if r.get("step") == 3 and "loss" in r)
    first = next(r for r in records(out / "one") if r.get("step") == 3 and "loss" in r)
    assert first["loss"] == pytest.approx(expected["loss"], rel=LOSS_RTOL, abs=0)
    [resumed] = [r["resumed"] for r in records(out / "one") if "resumed" in r]
    assert resumed["data"]["exact"]  # 2 readers before and after: the same batches


def test_its_weights_and_adam_moments_come_back_exactly(run, tmp_path, subprocess_env):
    _, source = run
    out = tmp_path / "compared.json"
    probe = REPO / "tests" / "train" / "restore_probe.py"
    result = subprocess.run(
        [sys.executable, str(probe), str(source), str(out), *ONE],
        env=subprocess_env, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    compared = json.loads(out.read_text())
    assert len(compared["compared"]) > 3 * 200 and compared["differ"] == []
