"""The recipe in real runs (DeepSpeed, the sample corpus): schedules across an extended
resume, a WSD decay branched off a checkpoint, the z-loss, and skipped loss spikes."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.helpers.training import records, train_args, train_run

pytestmark = pytest.mark.slow


def args(out: Path, name: str, tokenizer: Path, *extra: str) -> list[str]:
    return train_args(out, name, tokenizer, "checkpoint.every=4", "eval.every=0", *extra)


def learning_rates(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in records(run_dir) if "lr" in r}


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records(run_dir) if "loss" in r}


WSD = ("train.schedule=wsd", "train.decay_fraction=0.25", "train.warmup_steps=2")


@pytest.fixture(scope="module")
def wsd_runs(tmp_path_factory, subprocess_env, sample_tokenizer):
    """An 8-step WSD run extended to 12 on resume, and a 12-step one uninterrupted."""
    out = tmp_path_factory.mktemp("wsd")
    tokenizer = sample_tokenizer.path
    train_run(*args(out, "whole", tokenizer, *WSD, "train.steps=12"), env=subprocess_env)
    train_run(*args(out, "extended", tokenizer, *WSD, "train.steps=8"), env=subprocess_env)
    resume = [f"checkpoint.resume={out / 'extended' / 'checkpoints' / 'step_00000004'}"]
    resumed = train_run(
        *args(out, "extended", tokenizer, *WSD, "train.steps=12", *resume),
        env=subprocess_env,
    )  # fmt: skip
    return out, resumed.stderr


def test_an_extended_wsd_run_goes_on_in_its_stable_phase_without_a_jump(wsd_runs):
    out, log = wsd_runs
    whole, extended = learning_rates(out / "whole"), learning_rates(out / "extended")
    assert extended == whole  # every step's learning rate, before and after the resume
    assert extended[4] == extended[5] == max(whole.values())  # stable across the resume
    assert sorted(extended) == list(range(1, 13)) and extended[12] < extended[9]
    assert losses(out / "extended") == losses(out / "whole")
    assert "resumed at step 4: the wsd schedule's stable phase goes on (8 -> 12 steps" in log
    assert "(no jump)" in log
    [said] = [r for r in records(out / "extended") if "schedule" in r]
    assert said["step"] == 4 and "no jump" in said["schedule"]


def test_a_decay_branches_off_any_checkpoint_of_a_wsd_run(
    wsd_runs, tmp_path, subprocess_env, sample_tokenizer
):
    out, _ = wsd_runs
    branch = [f"checkpoint.resume={out / 'whole' / 'checkpoints' / 'step_00000004'}",
              "train.decay_from=4", "train.steps=7"]  # fmt: skip
    result = train_run(
        *args(tmp_path, "decayed", sample_tokenizer.path, *WSD, *branch), env=subprocess_env
    )  # fmt: skip
    rates = learning_rates(tmp_path / "decayed")  # steps 5 to 7 (the decay's steps 4-6)
    peak = learning_rates(out / "whole")[4]
    assert rates[5] == pytest.approx(peak)  # no jump at the branch
    assert rates[5] > rates[6] > rates[7] == pytest.approx(peak * (0.1 + 0.9 / 3))
    assert "no jump" in result.stderr


def test_a_stretched_cosine_schedule_is_said_with_the_learning_rate_before_and_after(
    tmp_path, subprocess_env, sample_tokenizer
):
    tokenizer = sample_tokenizer.path
    train_run(*args(tmp_path, "cosine", tokenizer, "train.steps=8"), env=subprocess_env)
    step4 = tmp_path / "cosine" / "checkpoints" / "step_00000004"
    resumed = train_run(
        *args(tmp_path, "cosine", tokenizer, "train.steps=12", f"checkpoint.resume={step4}"),
        env=subprocess_env,
    )  # fmt: skip
    assert "the cosine schedule is stretched from 8 to 12 steps" in resumed.stderr
    assert "as before," in resumed.stderr and "now (a jump)" in resumed.stderr


def test_the_z_loss_is_logged_apart_from_the_cross_entropy(
    tmp_path, subprocess_env, sample_tokenizer
):
    tokenizer = sample_tokenizer.path
    plain = args(tmp_path, "plain", tokenizer, "train.steps=3")
    train_run(*plain, env=subprocess_env)
    for name, precision in (("z", "fp32"), ("z-bf16", "bf16")):
        extra = ["train.steps=3", "train.z_loss=1e-2", f"train.precision={precision}"]
        train_run(*args(tmp_path, name, tokenizer, *extra), env=subprocess_env)
    z = [r for r in records(tmp_path / "z") if "loss" in r]
    assert all(r["z_loss"] > 0 for r in z)
    # step 1 starts from the same weights: the same cross-entropy, the z-loss logged apart
    assert z[0]["loss"] == pytest.approx(losses(tmp_path / "plain")[1], rel=1e-6)
    assert all("z_loss" not in r for r in records(tmp_path / "plain"))
    bf16 = [r for r in records(tmp_path / "z-bf16") if "loss" in r]
    assert bf16[0]["z_loss"] == pytest.approx(z[0]["z_loss"], rel=0.05)


SPIKES = ("train.spike_factor=1.001", "train.spike_window=2", "train.max_bad_steps=20",
          "train.schedule=constant", "train.warmup_steps=0")  # fmt: skip


def test_a_loss_above_the_multiple_of_the_recent_median_is_skipped_counted_and_resumed(
    tmp_path, subprocess_env, sample_tokenizer
):
    """A hair-trigger factor: every step whose loss rises above the median of the last two
    applied steps is skipped. The decisions are checked against the logged losses, and a
    run resumed halfway (its window is in the checkpoint) makes the same ones."""
    tokenizer = sample_tokenizer.path
    train_run(*args(tmp_path, "whole", tokenizer, *SPIKES, "train.steps=12"), env=subprocess_env)
    logged = records(tmp_path / "whole")
    spikes = [r for r in logged if "spike" in r]
    assert spikes, "no step rose above the hair-trigger threshold"
    window: list[float] = []
    for record in (r for r in logged if "loss" in r or "spike" in r):
        threshold = 1.001 * statistics.median(window) if len(window) == 2 else None
        if "spike" in record:
            assert threshold is not None and record["spike"]["loss"] > threshold
            assert record["spike"]["threshold"] == pytest.approx(threshold, rel=1e-9)
        elif record["loss"] is None:  # the metrics line of a skipped step: nothing trained
            assert record["spiked_steps"] >= 1
        else:
            assert threshold is None or record["loss"] <= threshold * (1 + 1e-9)
            window = [*window, record["loss"]][-2:]
    assert [r for r in logged if "loss" in r][-1]["spiked_steps"] == len(spikes)
    train_run(*args(tmp_path, "halves", tokenizer, *SPIKES, "train.steps=6"), env=subprocess_env)
    train_run(*args(tmp_path, "halves", tokenizer, *SPIKES, "train.steps=12"), env=subprocess_env)
    steps = [r for r in logged if "loss" in r or "spike" in r]
    halves = [r for r in records(tmp_path / "halves") if "loss" in r or "spike" in r]
    assert [(r["step"], r.get("loss"), r.get("spike")) for r in halves] == [
        (r["step"], r.get("loss"), r.get("spike")) for r in steps
    ]


def test_masked_packing_trains_and_validates_each_document_apart(
    tmp_path, subprocess_env, sample_tokenizer
):
    tokenizer = sample_tokenizer.path
    for name, packing in (("joined", "docs"), ("masked", "docs_masked")):
        extra = ["train.steps=3", f"data.packing={packing}"]
        train_run(*args(tmp_path, name, tokenizer, *extra), env=subprocess_env)
    joined, masked = records(tmp_path / "joined"), records(tmp_path / "masked")
    first = [r["val_loss"] for r in joined if "val_loss" in r][0]
    masked_first = [r["val_loss"] for r in masked if "val_loss" in r][0]
    # the same weights at step 0 and the same windows: only the reading differs
    assert masked_first != pytest.approx(first, rel=1e-6)
    assert all(r["loss"] > 0 for r in masked if "loss" in r)
