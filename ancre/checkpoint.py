"""The run folder's checkpoints (format version 1): layout, manifest, publication, resume.

::

    <run>/checkpoints/
      step_00001000/
        engine/              what DeepSpeed's save_checkpoint writes
        latest               DeepSpeed's own pointer to engine/ (its ZeRO-3 loader reads it)
        topology.json        the topology snapshot at this step
        config.yaml          the resolved config of the run
        tokenizer.model      the run's sentencepiece model
        trainer_state.json   step, tokens, world size, schedule, log window, bad steps
        ranks/rank_00000.json  per process: data-loader position and RNG states
        manifest.json        format, version, step, tokens, world size, ZeRO stage,
                             code version, and every file above with size and sha256
      latest                 name of the newest complete checkpoint, written last

A checkpoint is complete only when ``latest`` names it and its manifest verifies;
nothing else is ever loaded. docs/checkpoint-format.md describes the format.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ancre import __version__
from ancre.atomic import write_json_atomic, write_text_atomic
from ancre.config import AncreConfig, save_config
from ancre.snapshot import TopologySnapshot, write_snapshot

logger = logging.getLogger(__name__)

FORMAT = "ancre-checkpoint"
VERSION = 1
LATEST = "latest"
MANIFEST = "manifest.json"
STEP_FOLDER = re.compile(r"^step_(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete, altered, of another format, or cannot be resumed here."""


@dataclass(frozen=True)
class TrainerState:
    """Where the trainer stood when the checkpoint was taken.

    Attributes:
        step: Optimiser steps taken.
        tokens: Training tokens consumed over all processes.
        world_size: Number of processes that trained.
        schedule: The learning-rate schedule and the step it is at.
        log_loss_sum: Training losses summed since the last metrics line.
        log_steps: Steps since the last metrics line.
        bad_steps: Steps skipped in a row for a non-finite loss, up to this step.
        skipped_steps: Steps skipped for a non-finite loss over the whole run.
    """

    step: int
    tokens: int
    world_size: int
    schedule: dict[str, Any] = field(default_factory=dict)
    log_loss_sum: float = 0.0
    log_steps: int = 0
    bad_steps: int = 0
    skipped_steps: int = 0


def checkpoint_folder(run_dir: Path, step: int) -> Path:
    """The folder of the checkpoint taken after ``step`` steps."""
    return run_dir / "checkpoints" / f"step_{step:08d}"


def rng_state() -> dict[str, Any]:
    """This process's random states (python, torch CPU and CUDA) as JSON-ready data."""

    def encode(state: torch.Tensor) -> str:
        return base64.b64encode(state.numpy().tobytes()).decode("ascii")

    version, internal, gauss = random.getstate()
    return {
        "python": [version, list(internal), gauss],
        "torch": encode(torch.get_rng_state()),
        "cuda": [encode(s) for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available()
        else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores the random states saved by :func:`rng_state`."""

    def decode(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(decode(state["torch"]))
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all([decode(s) for s in state["cuda"]])


def write_rank_state(folder: Path, rank: int, data: dict[str, Any]) -> None:
    """Writes one process's data-loader position and RNG states (every rank calls it)."""
    (folder / "ranks").mkdir(parents=True, exist_ok=True)
    state = {"data": data, "rng": rng_state()}
    write_json_atomic(folder / "ranks" / f"rank_{rank:05d}.json", state, indent=None)


def read_rank_state(folder: Path, rank: int) -> dict[str, Any]:
    """One process's saved state: ``data`` (loader position) and ``rng``."""
    return json.loads((folder / "ranks" / f"rank_{rank:05d}.json").read_text())


def read_trainer_state(folder: Path) -> TrainerState:
    """The trainer state of a checkpoint."""
    return TrainerState(**json.loads((folder / "trainer_state.json").read_text()))


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
    """Completes a checkpoint whose engine/ and ranks/ files are written, then publishes it.

    Writes topology.json, config.yaml, tokenizer.model, trainer_state.json and the
    manifest, and finally points ``latest`` at the folder (atomically). Run on one
    process, after every process has finished writing its files.

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
    write_json_atomic(folder / "trainer_state.json", asdict(state))
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


def _step_folders(run_dir: Path) -> list[tuple[int, Path]]:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [(m, p) for p in root.iterdir() if (m := STEP_FOLDER.match(p.name))]
    return sorted((int(m.group(1)), p) for m, p in found)


def rewind_run_folder(run_dir: Path, step: int) -> None:
    """Drops what a run wrote after ``step`` so that resuming from there rewrites it.

    Keeps the metrics records of steps up to ``step`` (and drops a half-written last
    line), the topology snapshots up to ``step``, and removes checkpoint folders of
    later steps (incomplete ones a killed run left), reporting each.

    Args:
        run_dir: The run folder.
        step: The step of the checkpoint the run resumes from.
    """
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        kept = []
        for line in metrics.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s: dropped a half-written line", metrics)
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        write_text_atomic(metrics, "".join(line + "\n" for line in kept))
    for snapshot in sorted((run_dir / "topology").glob("step_*.json")):
        match = re.match(r"step_(\d+)\.json$", snapshot.name)
        if match and int(match.group(1)) > step:
            snapshot.unlink()
    for later, folder in _step_folders(run_dir):
        if later > step:
            logger.warning("removing %s: written after the checkpoint resumed from", folder)
            shutil.rmtree(folder)


def incomplete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders that are not complete: newer than ``latest`` or without manifest.

    They are never loaded; a resumed run reports and removes them.
    """
    pointer = run_dir / "checkpoints" / LATEST
    named = pointer.read_text().strip() if pointer.is_file() else ""
    match = STEP_FOLDER.match(named)
    named_step = int(match.group(1)) if match else -1
    return [
        folder
        for step, folder in _step_folders(run_dir)
        if folder.name != named and (step > named_step or not (folder / MANIFEST).is_file())
    ]


def prune_checkpoints(run_dir: Path, keep_last: int) -> list[Path]:
    """Deletes complete checkpoints older than the newest ``keep_last``.

    The checkpoint ``latest`` names is never deleted, nor are topology snapshots.

    Args:
        run_dir: The run folder.
        keep_last: How many of the newest complete checkpoints to keep (0 keeps all).

    Returns:
        The deleted folders.
    """
    if keep_last <= 0:
        return []
    pointer = run_dir / "checkpoints" / LATEST
    named = pointer.read_text().strip() if pointer.is_file() else None
    complete = [f for _, f in _step_folders(run_dir) if (f / MANIFEST).is_file()]
    doomed = [f for f in complete[:-keep_last] if f.name != named]
    for folder in doomed:
        shutil.rmtree(folder)
    return doomed
