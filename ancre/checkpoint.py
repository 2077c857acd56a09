"""The run folder's checkpoints (format version 1): layout, manifest, atomic publication.

::

    <run>/checkpoints/
      step_00001000/
        engine/              what DeepSpeed's save_checkpoint writes
        latest               DeepSpeed's own pointer to engine/ (its ZeRO-3 loader reads it)
        topology.json        the topology snapshot at this step
        config.yaml          the resolved config of the run
        tokenizer.model      the run's sentencepiece model
        trainer_state.json   step, tokens, world size
        data/rank_00000.json the data loader position of each rank
        manifest.json        format, version, step, tokens, world size, ZeRO stage,
                             code version, and every file above with size and sha256
      latest                 name of the newest complete checkpoint, written last

A checkpoint is complete only when ``latest`` names it and its manifest verifies.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ancre import __version__
from ancre.atomic import write_json_atomic, write_text_atomic
from ancre.config import AncreConfig, save_config
from ancre.snapshot import TopologySnapshot, write_snapshot

FORMAT = "ancre-checkpoint"
VERSION = 1
LATEST = "latest"
MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete, altered, or of another format."""


@dataclass(frozen=True)
class TrainerState:
    """Where the trainer stood when the checkpoint was taken.

    Attributes:
        step: Optimiser steps taken.
        tokens: Training tokens consumed over all processes.
        world_size: Number of processes that trained.
    """

    step: int
    tokens: int
    world_size: int


def checkpoint_folder(run_dir: Path, step: int) -> Path:
    """The folder of the checkpoint taken after ``step`` steps."""
    return run_dir / "checkpoints" / f"step_{step:08d}"


def write_data_state(folder: Path, rank: int, state: dict[str, Any]) -> None:
    """Writes one rank's data-loader position into a checkpoint folder (every rank calls it)."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "data" / f"rank_{rank:05d}.json", state, indent=None)


def read_data_state(folder: Path, rank: int) -> dict[str, Any]:
    """The data-loader position of one rank saved in a checkpoint."""
    return json.loads((folder / "data" / f"rank_{rank:05d}.json").read_text())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        str(path.relative_to(folder)): {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def publish_checkpoint(
    folder: Path,
    state: TrainerState,
    config: AncreConfig,
    snapshot: TopologySnapshot,
    tokenizer: Path,
) -> None:
    """Completes a checkpoint whose engine/ files are written, then publishes it.

    Writes topology.json, config.yaml, tokenizer.model, trainer_state.json and the
    manifest, and finally points ``latest`` at the folder (atomically). Run on one
    process, after every process has finished writing its engine files.

    Args:
        folder: The checkpoint folder (``checkpoint_folder(run_dir, step)``).
        state: The trainer's position.
        config: The resolved run config.
        snapshot: The topology at this step.
        tokenizer: The run's sentencepiece model file.
    """
    write_snapshot(snapshot, folder / "topology.json")
    save_config(config, folder / "config.yaml")
    shutil.copyfile(tokenizer, folder / "tokenizer.model")
    write_json_atomic(folder / "trainer_state.json", state.__dict__)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "step": state.step,
        "tokens": state.tokens,
        "world_size": state.world_size,
        "zero_stage": config.train.zero_stage,
        "code_version": __version__,
        "files": _file_table(folder),
    }
    write_json_atomic(folder / MANIFEST, manifest)
    write_text_atomic(folder.parent / LATEST, folder.name + "\n")


def verify_checkpoint(folder: Path) -> dict[str, Any]:
    """Checks a checkpoint's manifest against the files on disk.

    Args:
        folder: A checkpoint folder.

    Returns:
        The manifest.

    Raises:
        CheckpointError: The manifest is missing, of another format or version, or a
            file is missing or differs in size or sha256; the message names it.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {MANIFEST}; the checkpoint is incomplete") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{folder / MANIFEST}: not valid JSON ({error})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CheckpointError(
            f"{folder / MANIFEST}: format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r}; this ancre reads {FORMAT} version {VERSION}"
        )
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: listed in the manifest but missing")
        if path.stat().st_size != expected["size"] or _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"{path}: differs from the manifest (size or sha256)")
    return manifest


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest`` names, verified; None if the run has none.

    Raises:
        CheckpointError: ``latest`` names a folder that does not verify.
    """
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    verify_checkpoint(folder)
    return folder
