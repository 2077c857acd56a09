"""Exact resume through DeepSpeed: from a checkpoint, after SIGKILL, and what is refused.

Resuming on another number of processes or ZeRO stage: tests/train/test_reshard.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import ancre
from ancre.checkpoint import CheckpointFolder
from ancre.config import load_config
from ancre.data.tokenizer import Tokenizer
from ancre.data.validation import validation_set
from tests.helpers.training import latest_checkpoint, launcher, records, run_ancre, train_args

# latest_checkpoint, records, train_args


pytestmark = pytest.mark.slow


@pytest.fixture(
    scope="module",
    params=[(0, 1), (2, 1), (3, 1), (0, 2), (2, 2), (3, 2)],
    ids=lambda p: f"zero{p[0]}-p{p[1]}",
)
def reference(request, tmp_path_factory, subprocess_env, sample_tokenizer):
    """An uninterrupted 8-step run with checkpoints at steps 4 and 8."""
    zero, processes = request.param
    out = tmp_path_factory.mktemp("reference")
    args = train_args(out, "ref", sample_tokenizer.path, f"train.zero_stage={zero}")
    result = run_ancre("train", *args, env=subprocess_env, processes=processes)
    assert result.returncode == 0, result.stderr[-4000:]
    return zero, processes, out / "ref", args


def test_resumed_run_equals_the_uninterrupted_one(reference, subprocess_env, tmp_path):
    zero, processes, run_dir, args = reference
    middle = run_dir / "checkpoints" / "step_00000004"
    resumed = [*args, f"run.out_dir={tmp_path}", f"checkpoint.resume={middle}"]
    result = run_ancre("train", *resumed, env=subprocess_env, processes=processes)
    assert result.returncode == 0, result.stderr[-4000:]
    expected = [r for r in records(run_dir) if r["step"] > 4]
    assert records(tmp_path / "ref") == expected  # losses, grad norms, lr, val loss: equal
    assert len(expected) == 6  # steps 5..8, evaluation at 8, the stream statistics at 8
    assert [r["step"] for r in expected if "block_stats" in r] == [8]


def test_converted_weights_give_the_training_model(reference, tmp_path, subprocess_env):
    zero, processes, run_dir, _ = reference
    folder = latest_checkpoint(run_dir)
    for dtype in ("fp32", "bf16"):
        out = tmp_path / dtype
        result = run_ancre("convert", str(folder), str(out), f"--dtype={dtype}", env=subprocess_env)
        assert result.returncode == 0, result.stderr[-3000:]
    model = ancre.load_pretrained(tmp_path / "fp32")
    config = load_config(tmp_path / "fp32" / "config.yaml")
    inputs, targets = validation_set(
        config.data, Tokenizer(tmp_path / "fp32/tokenizer.model"), 1024
    )
    with torch.no_grad():
        loss = float(model(inputs, targets))
        logits = model(inputs[:2])
        half_logits = ancre.load_pretrained(tmp_path / "bf16")(inputs[:2])
    final = [r for r in records(run_dir) if "val_loss" in r][-1]["val_loss"]
    assert loss == pytest.approx(final, rel=1e-5)
    torch.testing.assert_close(half_logits, logits, atol=0.1, rtol=0.05)


# --- killed at any moment ---


def kill_when(popen: subprocess.Popen, condition, timeout: float = 300) -> bool:
    """SIGKILLs the run's process group as soon as ``condition()`` holds; False if it ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and popen.poll() is None:
        if condition():
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
            return True
        time.sleep(0.002)
    return False


def logged_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return -1
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            pass
    return max(steps, default=-1)


def checkpoint_being_written(run_dir: Path, after_step: int) -> Path | None:
    latest = run_dir / "checkpoints" / "latest"
    named = latest.read_text().strip() if latest.exists() else ""
    for folder in sorted((run_dir / "checkpoints").glob("step_*")):
        late = int(folder.name.removeprefix("step_")) > after_step
        if late and folder.name > named and (folder / "engine").is_dir():
            return folder
    return None


@pytest.fixture(scope="module")
def kill_settings(tmp_path_factory, sample_tokenizer, subprocess_env):
    """Settings of a 12-step run (checkpoint every 2, keep 2) and its uninterrupted metrics."""
    out = tmp_path_factory.mktemp("kill")
    args = train_args(
        out, "ref", sample_tokenizer.path, "train.steps=12", "checkpoint.every=2",
        "checkpoint.keep_last=2", "train.zero_stage=2", "data.num_workers=1",
    )  # fmt: skip
    result = run_ancre("train", *args, env=subprocess_env)
    assert result.returncode == 0, result.stderr[-4000:]
    return args, records(out / "ref")


def start(args: list[str], env) -> subprocess.Popen:
    return subprocess.Popen(
        [*launcher(1), "train", *args], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def finish_and_compare(args, expected, run_dir: Path, env) -> None:
    complete = latest_checkpoint(run_dir)
    written = run_dir.is_dir() and any(p.name != "run.lock" for p in run_dir.iterdir())
    result = run_ancre("train", *args, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    if complete is None and written:
        assert "from scratch" in result.stderr
    elif complete is not None and complete.name != "step_00000012":
        assert f"resuming from {complete}" in result.stderr
    assert records(run_dir) == expected
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))
    assert len(kept) == 2 and kept[-1] == "step_00000012"  # checkpoint.keep_last=2
    assert kept[0] in ("step_00000010", "step_00000011")  # 11: a stop checkpoint
    assert latest_checkpoint(run_dir).name == "step_00000012"
    snapshots = sorted(p.name for p in (run_dir / "topology").glob("*.json"))
    assert snapshots == [f"step_{s:08d}.json" for s in range(0, 13, 2)]


@pytest.mark.parametrize("kill_after_step", [5, 9])
def test_killed_between_checkpoints(kill_settings, kill_after_step, tmp_path, subprocess_env):
    args, expected = kill_settings
    args = [*args, f"run.out_dir={tmp_path}"]
    popen = start(args, subprocess_env)
    assert kill_when(popen, lambda: logged_step(tmp_path / "ref") >= kill_after_step)
    assert latest_checkpoint(tmp_path / "ref") is not None
    finish_and_compare(args, expected, tmp_path / "ref", subprocess_env)


@pytest.mark.parametrize("after_step", [0, 4], ids=["first-checkpoint", "later-checkpoint"])
def test_killed_while_a_checkpoint_is_written(kill_settings, after_step, tmp_path, subprocess_env):
    args, expected = kill_settings
    args = [*args, f"run.out_dir={tmp_path}"]
    run_dir = tmp_path / "ref"
    popen = start(args, subprocess_env)
    assert kill_when(popen, lambda: checkpoint_being_written(run_dir, after_step) is not None)
    torn = checkpoint_being_written(run_dir, after_step)
    assert torn is not None, "the checkpoint completed before the kill landed"
    complete = latest_checkpoint(run_dir)
    assert complete is None or complete.name < torn.name
    finish_and_compare(args, expected, run_dir, subprocess_env)
    assert not torn.exists() or CheckpointFolder(torn).verify()


# --- stopped by a signal at any moment (SLURM preemption, scancel, Ctrl-C) ---


def signal_when(popen: subprocess.Popen, condition, sig: int, timeout: float = 120) -> bool:
    """Sends ``sig`` to the run's process group once ``condition()`` holds; False if it ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and popen.poll() is None:
        if condition():
            os.killpg(popen.pid, sig)
            return True
        time.sleep(0.002)
    return False


def start_piped(args: list[str], env) -> subprocess.Popen:
    return subprocess.Popen(
        [*launcher(1), "train", *args], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


# seeded "random" moments: seconds after the start, spread over set-up, steps and evaluations
MOMENTS = [round(random.Random(seed).uniform(1.0, 10.0), 2) for seed in range(3)]


@pytest.mark.parametrize("moment", [*MOMENTS, "checkpoint-write"])
def test_stopped_by_sigterm_at_any_moment_resumes_exactly(
    kill_settings, moment, tmp_path, subprocess_env
):
    args, expected = kill_settings
    args = [*args, f"run.out_dir={tmp_path}"]
    run_dir = tmp_path / "ref"
    popen = start_piped(args, subprocess_env)
    if moment == "checkpoint-write":
        condition = lambda: checkpoint_being_written(run_dir, 2) is not None  # noqa: E731
    else:
        started = time.monotonic()
        condition = lambda: time.monotonic() - started >= moment  # noqa: E731
    sent = signal_when(popen, condition, signal.SIGTERM)
    _, stderr = popen.communicate(timeout=120)
    if sent and popen.returncode != 0:
        assert popen.returncode == 5, stderr[-3000:]
        assert not (run_dir / "run.lock").exists()
        if "SIGTERM received: stopped before training began" in stderr:
            assert not run_dir.exists()  # it came during the imports or the set-up
            return finish_and_compare(args, expected, run_dir, subprocess_env)
        assert "SIGTERM received: stopped after step" in stderr
        complete = latest_checkpoint(run_dir)
        assert complete is not None and f"the last complete checkpoint is {complete}" in stderr
        step = int(complete.name.removeprefix("step_"))
        assert f"stopped after step {step};" in stderr  # the checkpoint is at the stop
    finish_and_compare(args, expected, run_dir, subprocess_env)


# --- what resuming refuses, and bad steps ---


def test_finished_run_is_left_alone_and_never_refuses_to_overwrite(
    kill_settings, tmp_path, subprocess_env
):
    args, expected = kill_settings
    finished = Path(next(a for a in args if a.startswith("run.out_dir=")).partition("=")[2])
    shutil.copytree(finished / "ref", tmp_path / "ref")  # a finished run, copied elsewhere
    args = [*args, f"run.out_dir={tmp_path}"]
    again = run_ancre("train", *args, env=subprocess_env)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert records(tmp_path / "ref") == expected
    never = run_ancre("train", *args, "checkpoint.resume=never", env=subprocess_env)
    assert never.returncode == 2 and "run.overwrite=true" in never.stderr


def test_non_finite_steps_are_skipped_then_the_run_stops(
    tmp_path, subprocess_env, sample_tokenizer
):
    args = train_args(tmp_path, "nan", sample_tokenizer.path, "train.steps=4")
    assert run_ancre("train", *args, env=subprocess_env).returncode == 0
    # an absurd learning rate makes every weight explode after one step: losses turn NaN
    blowup = [*args, "train.steps=30", "train.lr=1e30", "train.max_bad_steps=3"]
    result = run_ancre("train", *blowup, env=subprocess_env)
    assert result.returncode == 3
    assert "3 steps in a row (up to step 8)" in result.stderr
    assert "last complete checkpoint" in result.stderr
    latest = latest_checkpoint(tmp_path / "nan")
    assert latest.name == "step_00000004" and CheckpointFolder(latest).verify()
    logged = records(tmp_path / "nan")
    assert [r.get("skipped_steps") for r in logged if r["step"] in (6, 7)] == [1, 2]
    assert all(r["loss"] is None for r in logged if r["step"] in (6, 7))
