"""Eight ranks, one GPU node's world size: the tiny preset at ZeRO-3 over 8 gloo processes
on this machine, SIGKILLed mid-run through torchrun and resumed exactly (the same
collectives and the same split of the data over 8 readers as on a node)."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers.training import launcher, records, run_ancre, train_args
from tests.train.test_resume import kill_when, logged_step

pytestmark = pytest.mark.slow

RANKS = 8
EIGHT = [
    "train.zero_stage=3", "train.micro_batch_size=1", f"train.global_batch_size={RANKS}",
    "train.steps=6", "checkpoint.every=2", "eval.every=3", "eval.tokens=512",
]  # fmt: skip


def test_eight_ranks_killed_mid_run_resume_exactly(tmp_path, subprocess_env, sample_tokenizer):
    reference = train_args(tmp_path, "ref", sample_tokenizer.path, *EIGHT)
    result = run_ancre("train", *reference, env=subprocess_env, processes=RANKS, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    expected = records(tmp_path / "ref")
    assert sum("loss" in r for r in expected) == 6

    killed = [*reference, "run.name=killed"]
    popen = subprocess.Popen(
        [*launcher(RANKS), "train", *killed], env=subprocess_env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert kill_when(popen, lambda: logged_step(tmp_path / "killed") >= 3, timeout=600)
    assert 3 <= logged_step(tmp_path / "killed") < 6  # killed mid-run, not after it
    result = run_ancre("train", *killed, env=subprocess_env, processes=RANKS, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resuming from" in result.stderr
    assert records(tmp_path / "killed") == expected  # every loss, norm, lr and val loss
