"""Tests for ancre/checkpoint.py: one checkpoint folder's files, manifest and verification."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import torch

from ancre.checkpoint import CheckpointError, CheckpointFolder, TrainerState
from ancre.config import load_config
from ancre.data.tokenizer import train_tokenizer
from ancre.kernels import reference_backend
from ancre.model.topology import AncreTopology
from ancre.run_folder import RunFolder
from ancre.snapshot import read_snapshot
from ancre.train.rng import rng_state, set_rng_state

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
    run = RunFolder(tmp_path / "run")
    folder = run.checkpoint_folder(5)
    for name, data in ENGINE_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "latest").write_text("engine")
    snapshot = AncreTopology(4, reference_backend, 0.01).snapshot(5, 100)
    config = load_config(None, ["train.steps=5", "train.warmup_steps=1", "train.zero_stage=2"])
    CheckpointFolder(folder).complete(TrainerState(5, 100, 2), config, snapshot, tokenizer_file)
    run.publish(folder)
    return folder


def test_publish_writes_everything(published: Path, tokenizer_file: Path) -> None:
    run = published.parents[1]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000005"
    assert RunFolder(run).latest() == published
    assert read_snapshot(published / "topology.json").step == 5
    assert load_config(published / "config.yaml").train.zero_stage == 2
    assert (published / "tokenizer.model").read_bytes() == tokenizer_file.read_bytes()
    assert CheckpointFolder(published).read_trainer_state() == TrainerState(5, 100, 2)


def test_manifest_lists_every_file(published: Path) -> None:
    manifest = CheckpointFolder(published).verify().manifest
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
        CheckpointFolder(published).verify()
    assert str(target) in str(info.value)
    with pytest.raises(CheckpointError):
        RunFolder(published.parents[1]).latest()


def test_deleted_file_detected(published: Path) -> None:
    target = published / "topology.json"
    target.unlink()
    with pytest.raises(CheckpointError, match="missing") as info:
        CheckpointFolder(published).verify()
    assert str(target) in str(info.value)


@pytest.mark.parametrize("content", ["{truncated", '{"format": "other", "version": 1}'])
def test_corrupt_manifest_detected(published: Path, content: str) -> None:
    manifest = published / "manifest.json"
    manifest.write_text(content)
    with pytest.raises(CheckpointError) as info:
        CheckpointFolder(published).verify()
    assert str(manifest) in str(info.value)


def test_missing_manifest_detected(published: Path) -> None:
    (published / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete") as info:
        CheckpointFolder(published).verify()
    assert str(published) in str(info.value)


@pytest.mark.parametrize(
    "content", ["", "[1, 2]", '{"format": "ancre-checkpoint", "version": 1, "step": 5}']
)
def test_manifest_without_its_keys_is_named(published: Path, content: str) -> None:
    manifest = published / "manifest.json"
    manifest.write_text(content)
    with pytest.raises(CheckpointError) as info:
        CheckpointFolder(published).verify()
    assert str(manifest) in str(info.value)


def test_trainer_state_that_is_garbage_or_lacks_keys_is_named(published: Path) -> None:
    path = published / "trainer_state.json"
    path.write_text('{"step": 5}')
    with pytest.raises(CheckpointError, match="lacks the keys tokens, world_size") as info:
        CheckpointFolder(published).read_trainer_state()
    assert str(path) in str(info.value)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        CheckpointFolder(published).read_trainer_state()


def test_rank_state_round_trips_data_and_random_state(tmp_path: Path) -> None:
    CheckpointFolder(tmp_path).write_rank_state(3, {"position": 7}, rng_state())
    expected = (random.random(), torch.rand(3))
    random.random(), torch.rand(5)  # move on, then restore
    saved = CheckpointFolder(tmp_path).read_rank_state(3)
    assert saved["data"] == {"position": 7}
    set_rng_state(saved["rng"])
    assert random.random() == expected[0] and torch.equal(torch.rand(3), expected[1])


def test_a_manifest_that_lists_no_checkpoint_or_another_step_is_refused(published: Path) -> None:
    manifest_path = published / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "files": {}}))
    with pytest.raises(CheckpointError, match="does not list trainer_state.json"):
        CheckpointFolder(published).verify()
    state_path = published / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "step": 9}))
    data = state_path.read_bytes()
    entry = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    files = {**manifest["files"], "trainer_state.json": entry}
    manifest_path.write_text(json.dumps({**manifest, "files": files}))
    with pytest.raises(CheckpointError, match="step 5, trainer_state.json step 9"):
        CheckpointFolder(published).verify()
