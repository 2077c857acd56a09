"""Tests for ancre/checkpoint.py at the file level: manifest, verification, ``latest``."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import torch

from ancre.checkpoint import (
    CheckpointError,
    TrainerState,
    checkpoint_folder,
    incomplete_checkpoints,
    latest_checkpoint,
    prune_checkpoints,
    publish_checkpoint,
    read_rank_state,
    read_trainer_state,
    rewind_run_folder,
    set_rng_state,
    verify_checkpoint,
    write_rank_state,
)
from ancre.config import load_config
from ancre.data.tokenizer import train_tokenizer
from ancre.kernels import reference_backend
from ancre.model.topology import AncreTopology
from ancre.snapshot import read_snapshot

ENGINE_FILES = {
    "engine/global_step5/mp_rank_00_model_states.pt": b"model weights " * 100,
    "engine/global_step5/zero_pp_rank_0_mp_rank_00_optim_states.pt": b"optimiser " * 300,
    "engine/latest": b"global_step5",
}


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    words = "anchor layer residual weight matrix token window shard stone river".split()
    texts = [" ".join(words[(i * k) % len(words)] for k in range(1, 12)) for i in range(60)]
    path = tmp_path_factory.mktemp("tokenizer") / "run.model"
    train_tokenizer(texts, path, vocab_size=300)
    return path


@pytest.fixture
def published(tmp_path: Path, tokenizer_file: Path) -> Path:
    """A run folder with one complete checkpoint after step 5; returns the checkpoint."""
    folder = checkpoint_folder(tmp_path / "run", 5)
    for name, data in ENGINE_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "latest").write_text("engine")
    snapshot = AncreTopology(4, reference_backend, 0.01).snapshot(5, 100)
    config = load_config(None, ["train.steps=5", "train.warmup_steps=1", "train.zero_stage=2"])
    publish_checkpoint(folder, TrainerState(5, 100, 2), config, snapshot, tokenizer_file)
    return folder


def test_publish_writes_everything(published: Path, tokenizer_file: Path) -> None:
    run = published.parents[1]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000005"
    assert latest_checkpoint(run) == published
    assert read_snapshot(published / "topology.json").step == 5
    assert load_config(published / "config.yaml").train.zero_stage == 2
    assert (published / "tokenizer.model").read_bytes() == tokenizer_file.read_bytes()
    assert read_trainer_state(published) == TrainerState(5, 100, 2)


def test_manifest_lists_every_file(published: Path) -> None:
    manifest = verify_checkpoint(published)
    assert (manifest["format"], manifest["version"]) == ("ancre-checkpoint", 1)
    assert (manifest["step"], manifest["tokens"], manifest["world_size"]) == (5, 100, 2)
    assert manifest["zero_stage"] == 2
    written = {"latest", "topology.json", "config.yaml", "tokenizer.model", "trainer_state.json"}
    assert set(manifest["files"]) == set(ENGINE_FILES) | written
    for name, entry in manifest["files"].items():
        data = (published / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_altered_byte_detected(published: Path) -> None:
    target = published / "engine/global_step5/mp_rank_00_model_states.pt"
    data = bytearray(target.read_bytes())
    data[10] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="differs from the manifest") as info:
        verify_checkpoint(published)
    assert str(target) in str(info.value)
    with pytest.raises(CheckpointError):
        latest_checkpoint(published.parents[1])


def test_deleted_file_detected(published: Path) -> None:
    target = published / "topology.json"
    target.unlink()
    with pytest.raises(CheckpointError, match="missing") as info:
        verify_checkpoint(published)
    assert str(target) in str(info.value)


@pytest.mark.parametrize("content", ["{truncated", '{"format": "other", "version": 1}'])
def test_corrupt_manifest_detected(published: Path, content: str) -> None:
    manifest = published / "manifest.json"
    manifest.write_text(content)
    with pytest.raises(CheckpointError) as info:
        verify_checkpoint(published)
    assert str(manifest) in str(info.value)


def test_missing_manifest_detected(published: Path) -> None:
    (published / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete") as info:
        verify_checkpoint(published)
    assert str(published) in str(info.value)


def test_no_checkpoint_gives_none(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "run") is None
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert latest_checkpoint(tmp_path / "run") is None


def publish_at(run: Path, step: int, tokenizer_file: Path) -> Path:
    folder = checkpoint_folder(run, step)
    (folder / "engine").mkdir(parents=True)
    (folder / "engine" / "weights.pt").write_bytes(bytes([step]) * 64)
    snapshot = AncreTopology(2, reference_backend, 0.01).snapshot(step, step * 10)
    config = load_config(None, ["train.steps=50", "train.warmup_steps=1"])
    publish_checkpoint(folder, TrainerState(step, step * 10, 1), config, snapshot, tokenizer_file)
    return folder


def test_rewind_drops_what_came_after_the_checkpoint(tmp_path: Path, tokenizer_file: Path) -> None:
    run = tmp_path / "run"
    publish_at(run, 4, tokenizer_file)
    torn = checkpoint_folder(run, 6)
    (torn / "engine").mkdir(parents=True)  # a checkpoint killed while being written
    (run / "topology").mkdir()
    for step in (0, 2, 4, 6):
        (run / "topology" / f"step_{step:08d}.json").write_text("{}")
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in (2, 4, 5, 6)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 7, "lo')
    assert incomplete_checkpoints(run) == [torn]
    rewind_run_folder(run, 4)
    kept = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert kept == [2, 4]
    assert sorted(p.name for p in (run / "topology").iterdir()) == [
        "step_00000000.json", "step_00000002.json", "step_00000004.json",
    ]  # fmt: skip
    assert not torn.exists() and incomplete_checkpoints(run) == []


def test_prune_keeps_the_newest_and_what_latest_names(tmp_path: Path, tokenizer_file) -> None:
    run = tmp_path / "run"
    folders = [publish_at(run, step, tokenizer_file) for step in (2, 4, 6, 8)]
    assert prune_checkpoints(run, keep_last=0) == []
    assert prune_checkpoints(run, keep_last=2) == folders[:2]
    assert [f.exists() for f in folders] == [False, False, True, True]
    (run / "checkpoints" / "latest").write_text("step_00000006\n")  # as if step 8 were torn
    assert prune_checkpoints(run, keep_last=1) == []  # step 6 is what latest names
    assert folders[2].exists()


def test_rank_state_round_trips_data_and_random_state(tmp_path: Path) -> None:
    write_rank_state(tmp_path, 3, {"position": 7})
    expected = (random.random(), torch.rand(3))
    random.random(), torch.rand(5)  # move on, then restore
    saved = read_rank_state(tmp_path, 3)
    assert saved["data"] == {"position": 7}
    set_rng_state(saved["rng"])
    assert random.random() == expected[0] and torch.equal(torch.rand(3), expected[1])
