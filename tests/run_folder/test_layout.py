"""Tests for ancre/run_folder/layout.py: names, and which checkpoint is complete."""

from __future__ import annotations

import pytest

from ancre.checkpoint import CheckpointError
from ancre.config import load_config
from ancre.run_folder import RunFolder, checkpoint_of


def test_paths_come_from_the_config(tmp_path):
    config = load_config(None, [f"run.out_dir={tmp_path}", "run.name=exp"])
    folder = RunFolder.of(config)
    assert folder.root == tmp_path / "exp"
    assert folder.checkpoint_folder(12) == tmp_path / "exp/checkpoints/step_00000012"
    assert folder.snapshot_path(3) == tmp_path / "exp/topology/step_00000003.json"


def test_no_checkpoint_gives_none(run):
    assert run.latest() is None
    run.checkpoints_dir.mkdir()
    assert run.latest() is None


def test_latest_is_verified(run, checkpoint_at):
    first = checkpoint_at(run, 2)
    second = checkpoint_at(run, 4)
    assert run.latest() == second
    (second / "topology.json").write_text("{}")
    with pytest.raises(CheckpointError, match="differs from the manifest") as info:
        run.latest()
    message = str(info.value)
    assert f"checkpoint.resume={first}" in message and "step_00000002" in message


@pytest.mark.parametrize("content", [b"step_00000009\n", b"garbage\x00\xff", b"../../etc\n"])
def test_latest_that_names_nothing_says_how_to_resume_from_an_older_one(
    run, checkpoint_at, content
):
    older = checkpoint_at(run, 2)
    run.latest_file.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        run.latest()
    message = str(info.value)
    assert str(run.latest_file) in message
    assert f"checkpoint.resume={older}" in message
    assert run.latest_or_none() is None


def test_latest_with_no_older_checkpoint_says_to_start_over(run):
    run.checkpoints_dir.mkdir()
    run.latest_file.write_text("nonsense")
    with pytest.raises(CheckpointError, match="run.overwrite=true"):
        run.latest()


def test_a_run_folder_is_recognised_by_its_config(run, tmp_path):
    assert run.is_run_folder()
    other = RunFolder(tmp_path / "mine")
    other.root.mkdir()
    (other.root / "config.yaml").write_text("my: own\nsettings: 1\n")
    assert not other.is_run_folder()


def test_a_checkpoint_is_whatever_a_user_would_type(run, checkpoint_at, tmp_path):
    checkpoint_at(run, 2)
    newest = checkpoint_at(run, 4)
    for typed in (run.root, run.checkpoints_dir, run.latest_file, newest):
        assert checkpoint_of(typed) == newest
    run.latest_file.unlink()  # without latest: the newest complete checkpoint
    assert checkpoint_of(run.root) == newest
    conversion = tmp_path / "exp"
    conversion.mkdir()
    assert checkpoint_of(conversion) == conversion  # not a run: the loader decides
    empty = RunFolder(tmp_path / "runs" / "empty")
    empty.checkpoints_dir.mkdir(parents=True)
    with pytest.raises(CheckpointError, match="without a complete checkpoint"):
        checkpoint_of(empty.root)
