"""One checkpoint folder (format version 1): its files, its manifest, its verification.

::

    step_00001000/
      engine/              what DeepSpeed's save_checkpoint writes
      latest               DeepSpeed's own pointer to engine/ (its ZeRO-3 loader reads it)
      topology.json        the topology snapshot at this step
      config.yaml          the resolved config of the run
      tokenizer.model      the run's tokenizer (sentencepiece, or a tokenizers JSON)
      trainer_state.json   step, tokens, world size, log window, bad steps
      ranks/rank_00000.json  per process: data-loader position and RNG states
      manifest.json        format, version, step, tokens, world size, ZeRO stage,
                           code version, and every file above with size and sha256
      universal/           made on the first resume with another number of processes or
                           ZeRO stage (ancre.train.universal); not in the manifest: it
                           has its own (universal/ancre-universal.json)

:class:`CheckpointFolder` alone spells these names. Its ``verify()`` hashes every file
once and returns a :class:`VerifiedCheckpoint` (manifest, trainer state, saved config)
that a resume carries on, so nothing is read twice. Where checkpoints live in a run
folder, which one is complete (``latest``) and which are pruned is
:mod:`ancre.run_folder`'s business. This module reads and writes JSON
and hashes files; it imports no torch, so tools that only look at checkpoints stay
light. docs/checkpoint-format.md describes the format.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from ancre.atomic import write_json_atomic
from ancre.config import AncreConfig, ConfigError, load_config, save_config
from ancre.snapshot import TopologySnapshot, write_snapshot

FORMAT = "ancre-checkpoint"
VERSION = 1
ENGINE = "engine"
TOPOLOGY = "topology.json"
CONFIG = "config.yaml"
TOKENIZER = "tokenizer.model"
TRAINER_STATE = "trainer_state.json"
RANKS = "ranks"
MANIFEST = "manifest.json"
UNIVERSAL = "universal"
MANIFEST_KEYS = ("format", "version", "step", "tokens", "world_size", "zero_stage", "files")
REQUIRED_FILES = (TRAINER_STATE, CONFIG, TOKENIZER, TOPOLOGY)
"""Files every complete checkpoint's manifest lists (beside engine/ and ranks/)."""


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
        bad_steps: Steps skipped in a row (a non-finite loss, or a loss spike), up to
            this step.
        skipped_steps: Steps skipped for a non-finite loss over the whole run.
        log_z_sum: z-loss terms summed since the last metrics line (like log_loss_sum).
        spiked_steps: Steps skipped as loss spikes over the whole run.
        loss_window: The global losses of the last applied steps (at most
            ``train.spike_window``), whose median a spike is measured against.
    """

    step: int
    tokens: int
    world_size: int
    log_loss_sum: Any = 0.0
    log_steps: int = 0
    bad_steps: int = 0
    skipped_steps: int = 0
    log_z_sum: Any = 0.0
    spiked_steps: int = 0
    loss_window: list[float] = field(default_factory=list)

    def saved(self) -> TrainerState:
        """A copy to write into a checkpoint: every value a plain number."""
        return replace(
            self, log_loss_sum=float(self.log_loss_sum), log_z_sum=float(self.log_z_sum),
            loss_window=list(self.loss_window),
        )  # fmt: skip


def code_version() -> str:
    """The installed ancre's version (``unknown`` when it runs from an uninstalled tree)."""
    try:
        return metadata.version("ancre")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_json(path: Path, what: str) -> Any:
    """A JSON file's content, or a CheckpointError that names the file and what is wrong."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete") from None
    except (ValueError, RecursionError) as error:  # bad JSON, bad UTF-8
        raise CheckpointError(f"{path}: {what} is not valid JSON ({error})") from None


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_table(folder: Path, leave_out: str = MANIFEST) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` (but ``leave_out`` at its top) with its size and sha256.

    Args:
        folder: A checkpoint folder, or its universal form.
        leave_out: The name of the manifest that will list the table.

    Returns:
        Path relative to ``folder`` -> ``{"size": bytes, "sha256": hex digest}``.
    """
    return {
        str(path.relative_to(folder)): {"size": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and str(path.relative_to(folder)) != leave_out
    }


def check_files(folder: Path, files: Any, manifest: Path) -> None:
    """Checks every file a manifest lists against its size and sha256 (each hashed once).

    Args:
        folder: The folder the names are relative to.
        files: The manifest's ``files`` table.
        manifest: The manifest file (named in errors).

    Raises:
        CheckpointError: The table is not one, or a file is missing or differs; the
            message names the file.
    """
    if not isinstance(files, dict):
        raise CheckpointError(f"{manifest}: its files table is not a JSON object")
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: listed in the manifest but missing")
        if not isinstance(expected, dict) or not {"size", "sha256"} <= expected.keys():
            raise CheckpointError(f"{manifest}: the entry of {name} lacks size or sha256")
        if path.stat().st_size != expected["size"] or sha256_of(path) != expected["sha256"]:
            raise CheckpointError(f"{path}: differs from the manifest (size or sha256)")


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint whose every file matched its manifest, with what it says of itself.

    Attributes:
        folder: The checkpoint.
        manifest: Its manifest.
        state: Its trainer state.
        config: The config it was trained with.
    """

    folder: CheckpointFolder
    manifest: dict[str, Any]
    state: TrainerState
    config: AncreConfig

    @property
    def path(self) -> Path:
        """The checkpoint folder's path."""
        return self.folder.path

    @property
    def step(self) -> int:
        """Optimiser steps taken."""
        return self.state.step

    @property
    def world_size(self) -> int:
        """Processes that wrote it."""
        return int(self.manifest["world_size"])

    @property
    def zero_stage(self) -> int:
        """The ZeRO stage it was written at."""
        return int(self.manifest["zero_stage"])


@dataclass(frozen=True)
class CheckpointFolder:
    """One checkpoint folder: the one place that spells the names of its files.

    Attributes:
        path: The folder (``<run>/checkpoints/step_XXXXXXXX``).
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        """The folder's name (``step_XXXXXXXX``)."""
        return self.path.name

    @property
    def engine(self) -> Path:
        """What DeepSpeed's save_checkpoint wrote."""
        return self.path / ENGINE

    @property
    def topology_file(self) -> Path:
        """The topology snapshot at this step."""
        return self.path / TOPOLOGY

    @property
    def config_file(self) -> Path:
        """The run's resolved config."""
        return self.path / CONFIG

    @property
    def tokenizer_file(self) -> Path:
        """The run's sentencepiece model."""
        return self.path / TOKENIZER

    @property
    def trainer_state_file(self) -> Path:
        """The trainer's position."""
        return self.path / TRAINER_STATE

    @property
    def manifest_file(self) -> Path:
        """The manifest, written last."""
        return self.path / MANIFEST

    @property
    def universal(self) -> Path:
        """The checkpoint's universal form (whole tensors per parameter), once it is made."""
        return self.path / UNIVERSAL

    def rank_state_file(self, rank: int) -> Path:
        """The file of one process's state."""
        return self.path / RANKS / f"rank_{rank:05d}.json"

    def has_manifest(self) -> bool:
        """Whether the manifest file exists (nothing is read)."""
        return self.manifest_file.is_file()

    def write_rank_state(self, rank: int, data: dict[str, Any], rng: dict[str, Any]) -> None:
        """Writes one process's data-loader position and RNG states (every rank calls it).

        Args:
            rank: The process's global rank.
            data: The loader's ``state_dict()``.
            rng: The random states (``ancre.train.rng.rng_state()``).
        """
        (self.path / RANKS).mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.rank_state_file(rank), {"data": data, "rng": rng}, indent=None)

    def read_rank_state(self, rank: int) -> dict[str, Any]:
        """One process's saved state: ``data`` (loader position) and ``rng``.

        Raises:
            CheckpointError: The file is missing, not JSON, or lacks ``data`` or ``rng``.
        """
        path = self.rank_state_file(rank)
        state = read_json(path, "the process state")
        if not isinstance(state, dict) or not {"data", "rng"} <= state.keys():
            raise CheckpointError(f"{path}: lacks the keys data and rng")
        return state

    def read_trainer_state(self) -> TrainerState:
        """The trainer state.

        Raises:
            CheckpointError: The file is missing, not JSON, or lacks a key.
        """
        path = self.trainer_state_file
        state = read_json(path, "the trainer state")
        known = {f.name for f in fields(TrainerState)}
        required = {"step", "tokens", "world_size"}
        if not isinstance(state, dict) or not required <= state.keys():
            missing = sorted(required - (state.keys() if isinstance(state, dict) else set()))
            raise CheckpointError(f"{path}: lacks the keys {', '.join(missing)}")
        return TrainerState(**{k: v for k, v in state.items() if k in known})

    def read_config(self) -> AncreConfig:
        """The config the checkpoint was trained with.

        Raises:
            CheckpointError: It does not read (the message says why).
        """
        try:
            return load_config(self.config_file)
        except ConfigError as error:
            raise CheckpointError(f"{self.config_file}: unreadable ({error})") from None

    def complete(
        self, state: TrainerState, config: AncreConfig, snapshot: TopologySnapshot, tokenizer: Path
    ) -> dict[str, Any]:
        """Completes a checkpoint whose engine/ and ranks/ files are written; writes its manifest.

        Writes topology.json, config.yaml, tokenizer.model, trainer_state.json and, last,
        the manifest. The checkpoint is not yet published: the run folder's ``latest``
        names it only when :meth:`ancre.run_folder.RunFolder.publish` is called. Run on
        one process, after every process has finished writing its files.

        Args:
            state: The trainer's position.
            config: The resolved run config.
            snapshot: The topology at this step.
            tokenizer: The run's tokenizer file.

        Returns:
            The manifest.
        """
        write_snapshot(snapshot, self.topology_file)
        save_config(config, self.config_file)
        shutil.copyfile(tokenizer, self.tokenizer_file)
        write_json_atomic(self.trainer_state_file, asdict(state.saved()))
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "step": state.step,
            "tokens": state.tokens,
            "world_size": state.world_size,
            "zero_stage": config.train.zero_stage,
            "code_version": code_version(),
            "files": file_table(self.path),
        }
        write_json_atomic(self.manifest_file, manifest)
        return manifest

    def read_manifest(self) -> dict[str, Any]:
        """The manifest, checked for format, version and keys (files not hashed).

        Raises:
            CheckpointError: The manifest is missing, not JSON, of another format or
                version, or lacks a key; the message names the file.
        """
        path = self.manifest_file
        if not path.is_file():
            raise CheckpointError(f"{self.path}: no {MANIFEST}; the checkpoint is incomplete")
        manifest = read_json(path, "the manifest")
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

    def verify(self) -> VerifiedCheckpoint:
        """Checks every file against the manifest (each hashed once) and reads the rest.

        Returns:
            The manifest, the trainer state and the saved config.

        Raises:
            CheckpointError: The manifest is missing, garbage, of another format or
                version; a file is missing or differs in size or sha256; the checkpoint is
                incomplete, or its config does not read. The message names the file.
        """
        if not self.path.is_dir():
            raise CheckpointError(f"{self.path}: no such checkpoint folder")
        manifest = self.read_manifest()
        check_files(self.path, manifest["files"], self.manifest_file)
        state = self._check_complete(manifest)
        return VerifiedCheckpoint(self, manifest, state, self.read_config())

    def _check_complete(self, manifest: dict[str, Any]) -> TrainerState:
        """The manifest lists a whole checkpoint, and its step agrees with the trainer state's.

        Returns:
            The trainer state.

        Raises:
            CheckpointError: A required file or the engine is not listed, or the steps of
                the manifest, the trainer state and the folder name differ.
        """
        listed = manifest["files"]
        missing = [name for name in REQUIRED_FILES if name not in listed]
        if not any(name.startswith(f"{ENGINE}/") for name in listed):
            missing.append(f"{ENGINE}/")
        if missing:
            raise CheckpointError(
                f"{self.manifest_file}: does not list {', '.join(missing[:5])}: not a "
                "complete checkpoint"
            )
        state = self.read_trainer_state()
        named = self.name.removeprefix("step_")
        steps = {manifest["step"], state.step, *([int(named)] if named.isdigit() else [])}
        if len(steps) > 1:
            raise CheckpointError(
                f"{self.path}: the manifest says step {manifest['step']}, {TRAINER_STATE} "
                f"step {state.step} and the folder name {self.name}: not one checkpoint"
            )
        return state
