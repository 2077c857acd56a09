"""A run folder with fake (but complete and verified) checkpoints, written by the real code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ancre.checkpoint import CheckpointFolder, TrainerState
from ancre.config import load_config, save_config
from ancre.kernels import reference_backend
from ancre.model.topology import AncreTopology
from ancre.run_folder import RunFolder

SETTINGS = ["train.steps=50", "train.warmup_steps=1"]


@pytest.fixture(scope="session")
def tokenizer_file(sample_tokenizer) -> Path:
    """The sample corpus's tokenizer file (tests/conftest.py)."""
    return sample_tokenizer.path


@pytest.fixture
def run(tmp_path: Path) -> RunFolder:
    """An ancre run folder (it has a config.yaml), under tmp_path/runs."""
    folder = RunFolder(tmp_path / "runs" / "run")
    folder.root.mkdir(parents=True)
    save_config(
        load_config(None, [*SETTINGS, f"run.out_dir={tmp_path / 'runs'}"]), folder.config_file
    )
    return folder


@pytest.fixture
def checkpoint_at(tokenizer_file: Path) -> Callable[..., Path]:
    """Writes a complete checkpoint after ``step`` into a run folder and publishes it."""

    def write(folder: RunFolder, step: int, *overrides: str, publish: bool = True) -> Path:
        path = folder.checkpoint_folder(step)
        (path / "engine").mkdir(parents=True)
        (path / "engine" / "weights.pt").write_bytes(bytes([step % 256]) * 64)
        (path / "ranks").mkdir()
        (path / "ranks" / "rank_00000.json").write_text('{"data": {}, "rng": {}}')
        snapshot = AncreTopology(2, reference_backend, 0.01).snapshot(step, step * 10)
        config = load_config(None, [*SETTINGS, f"run.out_dir={folder.root.parent}", *overrides])
        CheckpointFolder(path).complete(
            TrainerState(step, step * 10, 1), config, snapshot, tokenizer_file
        )
        if publish:
            folder.publish(path)
        return path

    return write
