"""Tests for ancre/run_folder/plan.py: every refusal comes before any change."""

from __future__ import annotations

import re

import pytest

from ancre import checkpoint
from ancre.checkpoint import CheckpointError, CheckpointFolder
from ancre.config import AncreConfig, flat_config, load_config
from ancre.config.resume import (
    BATCH,
    DIVERGING_ON_RESUME,
    FREE_ON_RESUME,
    NOT_COMPARED,
    REFUSED_ON_RESUME,
    REFUSED_WITH_REASON,
    compare_configs,
    resume_class,
)
from ancre.run_folder import RunFolderError, plan_run
from ancre.run_folder.rewind import rewind
from tests.run_folder.conftest import SETTINGS


def config_for(run, *overrides):
    return load_config(
        None, [*SETTINGS, f"run.out_dir={run.root.parent}", f"run.name={run.root.name}", *overrides]
    )


def snapshot_of(path):
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


def test_new_folder_starts(run, tmp_path):
    plan = plan_run(config_for(run, "run.name=fresh"), world_size=1)
    assert plan.resume_from is None and not plan.start_over


def test_auto_resumes_from_latest(run, checkpoint_at):
    checkpoint_at(run, 2)
    latest = checkpoint_at(run, 4)
    plan = plan_run(config_for(run, "train.steps=80"), world_size=1)
    assert (plan.resume_from, plan.step) == (latest, 4)
    # a longer cosine schedule moves every later learning rate: allowed, but said
    assert plan.changes == ("train.steps: 50 -> 80",) == plan.diverging


def test_a_resume_plan_hashes_each_file_once_and_reads_the_manifest_once(
    run, checkpoint_at, monkeypatch
):
    checkpoint_at(run, 2)
    latest = checkpoint_at(run, 4)
    hashed, manifests = [], []
    sha256, read_manifest = checkpoint.sha256_of, CheckpointFolder.read_manifest
    monkeypatch.setattr(checkpoint, "sha256_of", lambda path: hashed.append(path) or sha256(path))
    monkeypatch.setattr(
        CheckpointFolder, "read_manifest",
        lambda folder: manifests.append(folder.path) or read_manifest(folder),
    )  # fmt: skip
    plan = plan_run(config_for(run), world_size=1)
    files = sorted(p for p in latest.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert sorted(hashed) == files and manifests == [latest]
    # what the verification read travels with the plan: the run reads none of it again
    assert plan.checkpoint.manifest["step"] == 4 == plan.checkpoint.state.step
    assert plan.checkpoint.config == load_config(latest / "config.yaml")


def test_auto_without_a_checkpoint_starts_over_in_a_run_folder(run):
    run.metrics_file.write_text('{"step": 1}\n')
    plan = plan_run(config_for(run), world_size=1)
    assert plan.start_over and not plan.overwrite and plan.resume_from is None


def test_a_lost_latest_resumes_from_the_newest_checkpoint_that_verifies(run, checkpoint_at):
    checkpoint_at(run, 2)
    newest = checkpoint_at(run, 4)
    broken = checkpoint_at(run, 6)
    (broken / "engine" / "weights.pt").write_bytes(b"torn")  # fails its sha256
    run.latest_file.unlink()
    before = snapshot_of(run.root)
    plan = plan_run(config_for(run), world_size=1)
    assert (plan.resume_from, plan.step, plan.start_over) == (newest, 4, False)
    assert "latest is missing" in plan.recovered and "1 newer did not verify" in plan.recovered
    assert snapshot_of(run.root) == before  # planning changed nothing


def test_a_lost_latest_with_no_checkpoint_that_verifies_is_refused(run, checkpoint_at):
    broken = checkpoint_at(run, 2)
    (broken / "engine" / "weights.pt").write_bytes(b"torn")
    run.latest_file.unlink()
    before = snapshot_of(run.root)
    with pytest.raises(RunFolderError, match="none of the 1 complete checkpoints"):
        plan_run(config_for(run), world_size=1)
    assert snapshot_of(run.root) == before


@pytest.mark.parametrize("overwrite", ["false", "true"])
def test_a_checkpoint_or_a_conversion_is_never_a_run_folder(run, checkpoint_at, overwrite):
    checkpoint = checkpoint_at(run, 4)  # its config.yaml loads, like a run folder's
    conversion = run.root.parent / "exp"
    conversion.mkdir()
    (conversion / "model.safetensors").write_bytes(b"weights")
    (conversion / "config.yaml").write_text((checkpoint / "config.yaml").read_text())
    for folder, what in ((checkpoint, "a checkpoint folder"), (conversion, "ancre convert")):
        before = snapshot_of(folder)
        config = load_config(
            None, [*SETTINGS, f"run.out_dir={folder.parent}", f"run.name={folder.name}",
                   f"run.overwrite={overwrite}"],
        )  # fmt: skip
        with pytest.raises(RunFolderError, match=what):
            plan_run(config, world_size=1)
        assert snapshot_of(folder) == before


@pytest.mark.parametrize("resume", ["auto", "never"])
def test_a_foreign_folder_is_never_written_into(run, resume):
    foreign = run.root.parent / "mydata"
    foreign.mkdir()
    (foreign / "metrics.jsonl").write_text("my own measurements\n")
    (foreign / "config.yaml").write_text("not: ancre\n")
    before = snapshot_of(foreign)
    config = config_for(run, "run.name=mydata", f"checkpoint.resume={resume}")
    with pytest.raises(RunFolderError, match="not an ancre run folder|already holds a run"):
        plan_run(config, world_size=1)
    with pytest.raises(RunFolderError, match="not an ancre run folder"):
        plan_run(config_for(run, "run.name=mydata", "run.overwrite=true"), world_size=1)
    assert snapshot_of(foreign) == before


def test_overwrite_starts_over_in_a_run_folder(run, checkpoint_at):
    checkpoint_at(run, 2)
    plan = plan_run(config_for(run, "run.overwrite=true"), world_size=1)
    assert plan.start_over and plan.overwrite and plan.resume_from is None


def test_resume_refuses_another_model_naming_every_key(run, checkpoint_at):
    checkpoint_at(run, 2)
    config = config_for(run, "model.num_layers=8", "topology.kind=cascaded", "train.lr=0.01")
    with pytest.raises(CheckpointError) as info:
        plan_run(config, world_size=1)
    message = str(info.value)
    assert (
        "model.num_layers: None -> 8" in message
        and "topology.kind: 'ancre' -> 'cascaded'" in message
    )
    assert "train.lr" not in message and "model.init_from" in message and "run.name" in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.optimizer=adam_atan2"], "train.optimizer: 'adamw' -> 'adam_atan2' (the optimiser"),
        (["data.shuffle=false"], "data.shuffle: True -> False (it changes the order of the data"),
    ],
)
def test_resume_refuses_another_optimiser_or_data_order_up_front(
    run, checkpoint_at, overrides, message
):
    checkpoint_at(run, 2)
    before = snapshot_of(run.root)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        plan_run(config_for(run, *overrides), world_size=1)
    assert snapshot_of(run.root) == before


def test_a_muon_state_is_not_resharded(run, checkpoint_at):
    muon = ("train.optimizer=muon", "train.grad_clip=0")
    checkpoint_at(run, 2, *muon)
    assert plan_run(config_for(run, *muon), world_size=1).step == 2
    with pytest.raises(CheckpointError, match="only Adam-type moments are resharded"):
        plan_run(config_for(run, *muon, "train.zero_stage=2"), world_size=1)


def test_a_changed_seed_is_named_among_the_changes_that_alter_training(run, checkpoint_at):
    checkpoint_at(run, 2)
    plan = plan_run(config_for(run, "run.seed=7"), world_size=1)
    assert plan.diverging == ("run.seed: 0 -> 7",)


def test_resume_takes_another_split_but_not_another_global_batch(run, checkpoint_at):
    checkpoint_at(run, 2)
    plan = plan_run(config_for(run, "data.num_workers=2", "train.zero_stage=3"), world_size=2)
    assert plan.step == 2 and "train.zero_stage: 0 -> 3" in plan.changes
    with pytest.raises(CheckpointError, match=r"global_batch_size: 8 -> 16 .*allow_batch_change"):
        plan_run(config_for(run, "train.global_batch_size=16"), world_size=2)
    allowed = config_for(run, "train.global_batch_size=16", "checkpoint.allow_batch_change=true")
    assert "train.global_batch_size: 8 -> 16" in plan_run(allowed, world_size=2).diverging
    hub = config_for(run, "data.source=hub")
    with pytest.raises(CheckpointError, match="readers .*1 -> 2"):
        plan_run(hub, world_size=2)


def test_resume_path_to_an_older_checkpoint_plans_to_set_newer_ones_aside(run, checkpoint_at):
    older = checkpoint_at(run, 2)
    newer = checkpoint_at(run, 4)
    plan = plan_run(config_for(run, f"checkpoint.resume={older}"), world_size=1)
    assert plan.resume_from == older and plan.set_aside == (newer,)


def test_resume_path_from_another_run_needs_an_empty_folder(run, checkpoint_at):
    other = checkpoint_at(run, 2)
    plan = plan_run(config_for(run, "run.name=copy", f"checkpoint.resume={other}"), world_size=1)
    assert plan.resume_from == other and plan.set_aside == ()
    (run.root.parent / "copy").mkdir()
    (run.root.parent / "copy" / "metrics.jsonl").write_text("")
    with pytest.raises(RunFolderError, match="not empty"):
        plan_run(config_for(run, "run.name=copy", f"checkpoint.resume={other}"), world_size=1)


def test_a_run_folder_that_escapes_out_dir_is_refused(run, tmp_path):
    (run.root.parent / "escape").symlink_to(tmp_path)
    with pytest.raises(RunFolderError, match="not inside"):
        plan_run(config_for(run, "run.name=escape"), world_size=1)


def test_compare_sorts_changes():
    before = {"train.lr": 0.1, "eval.every": 5, "model.num_layers": 6, "checkpoint.resume": "auto"}
    after = {"train.lr": 0.2, "eval.every": 10, "model.num_layers": 6, "checkpoint.resume": "x"}
    refused, allowed, diverging = compare_configs(before, after)
    assert refused == [] and diverging == ["train.lr: 0.1 -> 0.2"]
    assert allowed == ["eval.every: 5 -> 10", "train.lr: 0.1 -> 0.2"]


def test_a_checkpoint_this_run_set_aside_is_its_own(run, checkpoint_at):
    first = checkpoint_at(run, 2)
    checkpoint_at(run, 4)
    aside = rewind(run, first, 2)  # step 4 moves to superseded/
    assert aside is not None
    set_aside = aside / "checkpoints" / "step_00000004"
    plan = plan_run(config_for(run, f"checkpoint.resume={set_aside}"), world_size=1)
    assert (plan.resume_from, plan.step) == (set_aside, 4)


def test_every_config_key_has_a_resume_class():
    keys = flat_config(AncreConfig())
    assert [key for key in keys if resume_class(key) is None] == []


def test_the_resume_classes_name_only_keys_that_exist():
    keys = set(flat_config(AncreConfig()))
    named = [*REFUSED_ON_RESUME, *REFUSED_WITH_REASON, BATCH, *DIVERGING_ON_RESUME, *NOT_COMPARED]
    assert sorted(set(named) - keys) == []
    assert [p for p in FREE_ON_RESUME if not any(k.startswith(p) for k in keys)] == []
