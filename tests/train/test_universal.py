"""A checkpoint's universal form: its own manifest, verified before use, remade when it fails,
and a full disk while it is written ending the run with exit code 6 (real files, real
DeepSpeed checkpoints, a real tmpfs)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ancre.checkpoint import CheckpointError, CheckpointFolder
from ancre.config import load_config
from ancre.data.tokenizer import Tokenizer
from ancre.model import build_model
from ancre.train.universal import MARKER, make_universal, verify_universal
from tests.helpers.small_disk import UNSHARE, can_mount_tmpfs
from tests.helpers.training import records, train_args, train_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, subprocess_env, sample_tokenizer) -> Path:
    """A tiny run at ZeRO 0 with checkpoints at steps 4 and 8."""
    out = tmp_path_factory.mktemp("universal")
    train_run(*train_args(out, "run", sample_tokenizer.path), env=subprocess_env)
    return out / "run"


def fresh_copy(run_dir: Path, tmp_path: Path) -> CheckpointFolder:
    """Step 4 of the run, copied (each test spoils its own)."""
    target = tmp_path / "step_00000004"
    shutil.copytree(run_dir / "checkpoints" / "step_00000004", target)
    return CheckpointFolder(target)


def made(checkpoint: CheckpointFolder) -> tuple[dict, bool]:
    config = load_config(checkpoint.config_file)
    model = build_model(config, Tokenizer(checkpoint.tokenizer_file).vocab_size)
    return make_universal(checkpoint, config.train.zero_stage, model, config)


def a_tensor_file(checkpoint: CheckpointFolder) -> Path:
    return next(iter(sorted((checkpoint.universal / "zero").glob("*/exp_avg.pt"))))


def test_the_manifest_lists_every_file_and_a_second_use_verifies_instead_of_making(
    run_dir, tmp_path
):
    checkpoint = fresh_copy(run_dir, tmp_path)
    marker, was_made = made(checkpoint)
    assert was_made and marker["version"] == 2 and marker["source_zero_stage"] == 0
    files = sorted(
        str(p.relative_to(checkpoint.universal))
        for p in checkpoint.universal.rglob("*")
        if p.is_file() and p.name != MARKER
    )
    assert sorted(marker["files"]) == files and len(files) > 10
    assert not checkpoint.path.with_name("universal.partial").exists()
    assert verify_universal(checkpoint)["files"] == marker["files"]
    again, was_made = made(checkpoint)
    assert not was_made and again == marker
    # the checkpoint's own manifest does not list it, and still verifies
    assert checkpoint.verify().step == 4


def truncate(checkpoint: CheckpointFolder) -> str:
    path = a_tensor_file(checkpoint)
    path.write_bytes(path.read_bytes()[:100])
    return str(path)


def garbage_manifest(checkpoint: CheckpointFolder) -> str:
    (checkpoint.universal / MARKER).write_text("{not json")
    return str(checkpoint.universal / MARKER)


def older_manifest(checkpoint: CheckpointFolder) -> str:
    path = checkpoint.universal / MARKER
    marker = json.loads(path.read_text())
    path.write_text(json.dumps({k: marker[k] for k in ("format", "source_zero_stage")} | {
        "version": 1})
    )  # fmt: skip
    return "version 1, made by an earlier ancre"


def no_manifest(checkpoint: CheckpointFolder) -> str:
    (checkpoint.universal / MARKER).unlink()
    return "missing; the universal form is incomplete"


def another_state(checkpoint: CheckpointFolder) -> str:
    """The checkpoint's manifest rewritten (same content, other bytes): another state."""
    manifest = json.loads(checkpoint.manifest_file.read_text())
    checkpoint.manifest_file.write_text(json.dumps(manifest))
    return "made from another state of"


SPOILERS = [truncate, garbage_manifest, older_manifest, no_manifest, another_state]


@pytest.mark.parametrize("spoil", SPOILERS, ids=[s.__name__ for s in SPOILERS])
def test_a_spoilt_universal_form_is_refused_by_name_then_made_again(
    spoil, run_dir, tmp_path, caplog
):
    checkpoint = fresh_copy(run_dir, tmp_path)
    marker, _ = made(checkpoint)
    named = spoil(checkpoint)
    with pytest.raises(CheckpointError) as refused:
        verify_universal(checkpoint)
    assert named in str(refused.value)
    with caplog.at_level(logging.WARNING, logger="ancre"):
        remade, was_made = made(checkpoint)
    assert was_made and named in caplog.text and "making the universal form again" in caplog.text
    assert verify_universal(checkpoint)["files"].keys() == marker["files"].keys()
    for name, entry in marker["files"].items():
        assert remade["files"][name]["sha256"] == entry["sha256"], name


def test_a_resume_through_a_truncated_universal_form_remakes_it_and_continues_exactly(
    run_dir, tmp_path, subprocess_env, sample_tokenizer
):
    checkpoint = fresh_copy(run_dir, tmp_path)
    made(checkpoint)
    named = truncate(checkpoint)
    args = train_args(tmp_path, "resumed", sample_tokenizer.path, "train.zero_stage=1",
                      f"checkpoint.resume={checkpoint.path}")  # fmt: skip
    result = train_run(*args, env=subprocess_env)
    assert named in result.stderr and "making the universal form again" in result.stderr
    assert "Traceback" not in result.stderr
    verify_universal(checkpoint)
    resumed = {r["step"]: r["loss"] for r in records(tmp_path / "resumed") if "loss" in r}
    reference = {r["step"]: r["loss"] for r in records(run_dir) if "loss" in r}
    assert resumed[5] == pytest.approx(reference[5], rel=1e-5, abs=0)


def used_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.skipif(not can_mount_tmpfs(), reason="cannot mount a small tmpfs (unshare)")
def test_a_full_disk_while_the_universal_form_is_written_exits_6_and_keeps_the_checkpoint(
    run_dir, tmp_path, subprocess_env, sample_tokenizer
):
    """The run folder on a tmpfs with room for the run but not for the universal form."""
    universal_bytes = made(fresh_copy(run_dir, tmp_path))[0]["bytes"]
    disk = tmp_path / "disk"
    disk.mkdir()
    size = used_bytes(run_dir) + universal_bytes // 3 + (4 << 20)
    args = train_args(disk, "run", sample_tokenizer.path, "train.zero_stage=1",
                      "train.steps=10")  # fmt: skip
    inner = " ".join(f"'{a}'" for a in [sys.executable, "-m", "ancre.cli", "train", *args])
    script = (
        f"mount -t tmpfs -o size={size} tmpfs {disk} && cp -a {run_dir} {disk}/run && "
        f"{inner}; echo exit=$?; ls {disk}/run/checkpoints/step_00000008 > {tmp_path}/ls.txt; "
        f"sha256sum {disk}/run/checkpoints/step_00000008/engine/* > {tmp_path}/after.txt"
    )
    result = subprocess.run(UNSHARE + ["sh", "-c", script], capture_output=True, text=True,
                            env=subprocess_env, timeout=600)  # fmt: skip
    assert "exit=6" in result.stdout, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "ancre train: stopped: the disk holding" in result.stderr
    assert "the universal form of" in result.stderr and "does not fit beside it" in result.stderr
    # nothing of the universal form is left, and the checkpoint's files are as they were
    assert "universal" not in (tmp_path / "ls.txt").read_text()
    engine = run_dir / "checkpoints" / "step_00000008" / "engine"
    after = dict(line.split()[::-1] for line in (tmp_path / "after.txt").read_text().splitlines())
    for path in engine.iterdir():
        moved = str(disk / "run" / "checkpoints" / "step_00000008" / "engine" / path.name)
        assert after[moved] == subprocess.run(["sha256sum", str(path)], capture_output=True,
                                              text=True).stdout.split()[0]  # fmt: skip
