"""One checkpoint folder (format version 1): its files, its manifest, its verification.

::

    step_00001000/
      engine/              what DeepSpeed's save_checkpoint writes
      latest               DeepSpeed's own pointer to engine/ (its ZeRO-3 loader reads it)
      topology.json        the topology snapshot at this step
      config.yaml          the resolved config of the run
      tokenizer.model      the run's sentencepiece model
      trainer_state.json   step, tokens, world size, log window, bad steps
      ranks/rank_00000.json  per process: data-loader position and RNG states
      manifest.json        format, version, step, tokens, world size, ZeRO stage,
                           code version, and every file above with size and sha256
      universal/           made on the first resume with another number of processes or
                           ZeRO stage (ancre.train.reshard); not in the manifest

Where checkpoints live in a run folder, which one is complete (``latest``) and which
are pruned is :mod:`ancre.run_folder`'s business. This module reads and writes JSON
and hashes files; it imports no torch, so tools that only look at checkpoints stay
light. docs/checkpoint-format.md describes the format.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from ancre.atomic import write_json_atomic
from ancre.config import AncreConfig, save_config
from ancre.snapshot import TopologySnapshot, write_snapshot

FORMAT = "ancre-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.json"
MANIFEST_KEYS = ("format", "version", "step", "tokens", "world_size", "zero_stage", "files")
UNIVERSAL = "universal"


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete, altered, of another format, or cannot be resumed here."""


@dataclass
class TrainerState:
    """Everything the training loop carries from step to step; saved in every checkpoint.

    The trainer updates one instance in place. The learning-rate schedule is a pure
    function of the step and the config (``ancre.train.schedule``), so it has no state
    here. Checkpoints of earlier versions also hold a ``schedule`` entry, ignored.

    Attributes:
        step: Optimiser steps taken.
        tokens: Training tokens consumed over all processes.
        world_size: Number of processes that trained.
        log_loss_sum: Training losses summed since the last metrics line (during training
            possibly a 0-d device tensor, read once per metrics line; a float when saved).
        log_steps: Steps since the last metrics line.
        bad_steps: Steps skipped in a row for a non-finite loss, up to this step.
        skipped_steps: Steps skipped for a non-finite loss over the whole run.
    """

    step: int
    tokens: int
    world_size: int
    log_loss_sum: Any = 0.0
    log_steps: int = 0
    bad_steps: int = 0
    skipped_steps: int = 0

    def saved(self) -> TrainerState:
        """A copy to write into a checkpoint: every value a plain number."""
        return replace(self, log_loss_sum=float(self.log_loss_sum))


def code_version() -> str:
    """The installed ancre's version (``unknown`` when it runs from an uninstalled tree)."""
    try:
        return metadata.version("ancre")
    except metadata.PackageNotFoundError:
        return "unknown"


def _read_json(path: Path, what: str) -> Any:
    """A JSON file's content, or a CheckpointError that names the file and what is wrong."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete") from None
    except (ValueError, RecursionError) as error:  # bad JSON, bad UTF-8
        raise CheckpointError(f"{path}: {what} is not valid JSON ({error})") from None


def write_rank_state(folder: Path, rank: int, data: dict[str, Any], rng: dict[str, Any]) -> None:
    """Writes one process's data-loader position and RNG states (every rank calls it).

    Args:
        folder: The checkpoint folder.
        rank: The process's global rank.
        data: The loader's ``state_dict()``.
        rng: The random states (``ancre.train.rng.rng_state()``).
    """
    (folder / "ranks").mkdir(parents=True, exist_ok=True)
    write_json_atomic(rank_state_path(folder, rank), {"data": data, "rng": rng}, indent=None)


def universal_path(folder: Path) -> Path:
    """The checkpoint's universal form (whole tensors per parameter), once it is made."""
    return folder / UNIVERSAL


def rank_state_path(folder: Path, rank: int) -> Path:
    """The file of one process's state inside a checkpoint."""
    return folder / "ranks" / f"rank_{rank:05d}.json"


def read_rank_state(folder: Path, rank: int) -> dict[str, Any]:
    """One process's saved state: ``data`` (loader position) and ``rng``.

    Raises:
        CheckpointError: The file is missing, not JSON, or lacks ``data`` or ``rng``.
    """
    path = rank_state_path(folder, rank)
    state = _read_json(path, "the process state")
    if not isinstance(state, dict) or not {"data", "rng"} <= state.keys():
        raise CheckpointError(f"{path}: lacks the keys data and rng")
    return state


def read_trainer_state(folder: Path) -> TrainerState:
    """The trainer state of a checkpoint.

    Raises:
        CheckpointError: The file is missing, not JSON, or lacks a key.
    """
    path = folder / TRAINER_STATE
    state = _read_json(path, "the trainer state")
    known = {f.name for f in fields(TrainerState)}
    required = {"step", "tokens", "world_size"}
    if not isinstance(state, dict) or not required <= state.keys():
        missing = sorted(required - (state.keys() if isinstance(state, dict) else set()))
        raise CheckpointError(f"{path}: lacks the keys {', '.join(missing)}")
    return TrainerState(**{k: v for k, v in state.items() if k in known})


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


def complete_checkpoint(
    folder: Path,
    state: TrainerState,
    config: AncreConfig,
    snapshot: TopologySnapshot,
    tokenizer: Path,
) -> dict[str, Any]:
    """Completes a checkpoint whose engine/ and ranks/ files are written; writes its manifest.

    Writes topology.json, config.yaml, tokenizer.model, trainer_state.json and, last,
    the manifest. The checkpoint is not yet published: the run folder's ``latest``
    names it only when :meth:`ancre.run_folder.RunFolder.publish` is called. Run on one
    process, after every process has finished writing its files.

    Args:
        folder: The checkpoint folder.
        state: The trainer's position.
        config: The resolved run config.
        snapshot: The topology at this step.
        tokenizer: The run's sentencepiece model file.

    Returns:
        The manifest.
    """
    write_snapshot(snapshot, folder / "topology.json")
    save_config(config, folder / "config.yaml")
    shutil.copyfile(tokenizer, folder / "tokenizer.model")
    write_json_atomic(folder / TRAINER_STATE, asdict(state.saved()))
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "step": state.step,
        "tokens": state.tokens,
        "world_size": state.world_size,
        "zero_stage": config.train.zero_stage,
        "code_version": code_version(),
        "files": _file_table(folder),
    }
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """A checkpoint's manifest, checked for format, version and keys (files not hashed).

    Raises:
        CheckpointError: The manifest is missing, not JSON, of another format or version,
            or lacks a key; the message names the file.
    """
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {MANIFEST}; the checkpoint is incomplete")
    manifest = _read_json(path, "the manifest")
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r}; this ancre reads {FORMAT} version {VERSION}"
        )
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing or not isinstance(manifest["files"], dict):
        raise CheckpointError(f"{path}: lacks the keys {', '.join(missing or ['files'])}")
    return manifest


def verify_checkpoint(folder: Path) -> dict[str, Any]:
    """Checks a checkpoint's manifest against the files on disk.

    Args:
        folder: A checkpoint folder.

    Returns:
        The manifest.

    Raises:
        CheckpointError: The manifest is missing, garbage, of another format or version,
            or a file is missing or differs in size or sha256; the message names it.
    """
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    manifest = read_manifest(folder)
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: listed in the manifest but missing")
        if not isinstance(expected, dict) or not {"size", "sha256"} <= expected.keys():
            raise CheckpointError(f"{folder / MANIFEST}: the entry of {name} lacks size or sha256")
        if path.stat().st_size != expected["size"] or _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"{path}: differs from the manifest (size or sha256)")
    _check_complete(folder, manifest)
    return manifest


REQUIRED_FILES = (TRAINER_STATE, "config.yaml", "tokenizer.model", "topology.json")
"""Files every complete checkpoint's manifest lists (beside engine/ and ranks/)."""


def _check_complete(folder: Path, manifest: dict[str, Any]) -> None:
    """The manifest lists a whole checkpoint, and its step agrees with the trainer state's.

    Raises:
        CheckpointError: A required file or the engine is not listed, or the steps of
            the manifest, the trainer state and the folder name differ.
    """
    listed = manifest["files"]
    missing = [name for name in REQUIRED_FILES if name not in listed]
    if not any(name.startswith("engine/") for name in listed):
        missing.append("engine/")
    if missing:
        raise CheckpointError(
            f"{folder / MANIFEST}: does not list {', '.join(missing[:5])}: not a complete "
            "checkpoint"
        )
    state_step = read_trainer_state(folder).step
    named = folder.name.removeprefix("step_")
    steps = {manifest["step"], state_step, *([int(named)] if named.isdigit() else [])}
    if len(steps) > 1:
        raise CheckpointError(
            f"{folder}: the manifest says step {manifest['step']}, {TRAINER_STATE} step "
            f"{state_step} and the folder name {folder.name}: not one checkpoint"
        )
