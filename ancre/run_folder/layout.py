"""Where everything of a run lives, and which of its checkpoints is complete.

A :class:`RunFolder` only names paths and reads; the modules beside it change the
folder (rewind, retention) and decide what a run does with it (plan).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ancre.atomic import write_text_atomic
from ancre.checkpoint import MANIFEST, CheckpointError, CheckpointFolder, VerifiedCheckpoint
from ancre.config import AncreConfig, ConfigError, load_config

STEP_FOLDER = re.compile(r"^step_(\d{8})$")
SNAPSHOT_FILE = re.compile(r"^step_(\d{8})\.json$")
LOCK = "run.lock"
RUN_ENTRIES = (
    "config.yaml", "metrics.jsonl", "tokenizer.model", "topology", "checkpoints", "wandb",
    "superseded", "profile",
)  # fmt: skip
"""What a run writes into its folder: all that starting over may delete."""
EXPORT_MARKER = "ancre-export.json"
"""Written first into every ``ancre convert`` folder (both formats): what may be replaced."""
NOT_A_RUN = {
    MANIFEST: "a checkpoint folder",
    "model.safetensors": "an ancre convert folder (or a Hugging Face export)",
    EXPORT_MARKER: "an export written by ancre convert",
}
"""Files whose presence says a folder is not a run folder, though its config.yaml loads."""


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked; the message names it and says what to do."""


@dataclass(frozen=True)
class RunFolder:
    """The folder of one run and the names of everything in it.

    Attributes:
        root: ``<run.out_dir>/<run.name>``.
    """

    root: Path

    @classmethod
    def of(cls, config: AncreConfig) -> RunFolder:
        """The run folder a config names."""
        return cls(Path(config.run.out_dir) / config.run.name)

    @classmethod
    def holding(cls, checkpoint: Path) -> RunFolder | None:
        """The run folder a checkpoint folder belongs to; None for one kept elsewhere."""
        root = cls(checkpoint.resolve().parent.parent)
        if checkpoint.resolve().parent not in (root.checkpoints_dir, root.superseded_dir):
            return None
        return root if root.is_run_folder() else None

    @property
    def config_file(self) -> Path:
        """The resolved config of the run."""
        return self.root / "config.yaml"

    @property
    def metrics_file(self) -> Path:
        """One JSON object per event."""
        return self.root / "metrics.jsonl"

    @property
    def tokenizer_file(self) -> Path:
        """The run's sentencepiece model, so the folder stands alone."""
        return self.root / "tokenizer.model"

    @property
    def topology_dir(self) -> Path:
        """Topology snapshots, one file per snapshot step."""
        return self.root / "topology"

    @property
    def checkpoints_dir(self) -> Path:
        """Checkpoint folders and the ``latest`` pointer."""
        return self.root / "checkpoints"

    @property
    def latest_file(self) -> Path:
        """Names the newest complete checkpoint; written last, atomically."""
        return self.checkpoints_dir / "latest"

    @property
    def lock_file(self) -> Path:
        """The lock of the job that owns the folder (:mod:`ancre.run_folder.lock`)."""
        return self.root / LOCK

    @property
    def superseded_dir(self) -> Path:
        """Where complete checkpoints newer than a resume point are moved, never deleted."""
        return self.root / "superseded"

    @property
    def wandb_dir(self) -> Path:
        """Weights & Biases files of the run (offline mode writes its runs here)."""
        return self.root / "wandb"

    @property
    def profile_dir(self) -> Path:
        """Profiler traces and operator summaries (``train.profile``)."""
        return self.root / "profile"

    def snapshot_path(self, step: int) -> Path:
        """The topology snapshot written after ``step`` steps."""
        return self.topology_dir / f"step_{step:08d}.json"

    def checkpoint_folder(self, step: int) -> Path:
        """The folder of the checkpoint taken after ``step`` steps."""
        return self.checkpoints_dir / f"step_{step:08d}"

    def snapshots(self) -> list[tuple[int, Path]]:
        """(step, file) of every topology snapshot, in step order."""
        if not self.topology_dir.is_dir():
            return []
        found = [(m, p) for p in self.topology_dir.iterdir() if (m := SNAPSHOT_FILE.match(p.name))]
        return sorted((int(m.group(1)), p) for m, p in found)

    def step_folders(self) -> list[tuple[int, Path]]:
        """(step, folder) of every checkpoint folder, complete or not, in step order."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [(m, p) for p in self.checkpoints_dir.iterdir() if (m := STEP_FOLDER.match(p.name))]
        return sorted((int(m.group(1)), p) for m, p in found if p.is_dir())

    def with_manifest(self) -> list[Path]:
        """Checkpoint folders whose manifest reads (files not hashed), oldest first."""
        return [folder for _, folder in self.step_folders() if has_manifest(folder)]

    def latest_name(self) -> str | None:
        """The checkpoint folder name ``latest`` holds; None when there is no ``latest``.

        Raises:
            CheckpointError: ``latest`` is unreadable or names no checkpoint folder.
        """
        try:
            text = self.latest_file.read_bytes().decode("utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            problem = f"{self.latest_file}: unreadable ({error})"
            raise CheckpointError(self._with_advice(problem)) from None
        if not STEP_FOLDER.match(text) or not (self.checkpoints_dir / text).is_dir():
            raise CheckpointError(
                self._with_advice(
                    f"{self.latest_file}: holds {text[:80]!r}, which names no checkpoint folder "
                    f"of this run"
                )
            )
        return text

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` names, verified; None when the run has none.

        Raises:
            CheckpointError: ``latest`` is garbage or names a checkpoint that does not
                verify; the message says how to resume from an older one.
        """
        verified = self.latest_verified()
        return None if verified is None else verified.path

    def latest_verified(self) -> VerifiedCheckpoint | None:
        """The checkpoint ``latest`` names, with what its verification read; None if none.

        Raises:
            CheckpointError: As :meth:`latest`.
        """
        name = self.latest_name()
        if name is None:
            return None
        folder = self.checkpoints_dir / name
        try:
            return CheckpointFolder(folder).verify()
        except CheckpointError as error:
            raise CheckpointError(self._with_advice(str(error), but=folder)) from None

    def latest_or_none(self) -> Path | None:
        """The checkpoint ``latest`` names without verifying it, or None (for messages)."""
        try:
            name = self.latest_name()
        except CheckpointError:
            return None
        return None if name is None else self.checkpoints_dir / name

    def publish(self, folder: Path) -> None:
        """Points ``latest`` at a checkpoint whose manifest is written (atomically)."""
        write_text_atomic(self.latest_file, folder.name + "\n")

    def entries(self) -> list[Path]:
        """What the folder holds, the lock aside (empty when it does not exist)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.name != LOCK)

    def run_entries(self) -> Iterator[Path]:
        """The entries a run wrote (:data:`RUN_ENTRIES`) that are present."""
        return (self.root / name for name in RUN_ENTRIES if (self.root / name).exists())

    def is_run_folder(self) -> bool:
        """Whether the folder is recognisably an ancre run's.

        Its config.yaml loads and it holds none of :data:`NOT_A_RUN`: a checkpoint
        folder, a conversion and an export also hold a config.yaml, and are never a run
        folder to start over in.
        """
        if not self.config_file.is_file() or self.looks_like() is not None:
            return False
        try:
            load_config(self.config_file)
        except ConfigError:
            return False
        return True

    def looks_like(self) -> str | None:
        """What the folder is when one of :data:`NOT_A_RUN` says it is not a run folder."""
        return next((what for name, what in NOT_A_RUN.items() if (self.root / name).exists()), None)

    def _with_advice(self, problem: str, but: Path | None = None) -> str:
        older = [f for f in self.with_manifest() if f != but]
        hint = (
            f"complete-looking checkpoints here: {', '.join(f.name for f in older)}; resume "
            f"from one with checkpoint.resume={older[-1]}"
            if older
            else "no other checkpoint here; start over with run.overwrite=true, or use "
            "another run.name"
        )
        return f"{problem}. To resume from an older checkpoint, set checkpoint.resume=PATH ({hint})"


def checkpoint_of(path: Path) -> Path:
    """The checkpoint a user means by a path they typed.

    A step folder is itself; ``checkpoints/latest``, ``checkpoints/`` and a run folder
    stand for the checkpoint ``latest`` names, or without ``latest`` the run's newest
    complete one; the caller verifies it. Any other path (a conversion) is returned as
    it is.

    Raises:
        CheckpointError: A run folder with no complete checkpoint, or an unreadable
            ``latest``.
    """
    if path.name == "latest" and path.is_file():
        path = path.parent
    if path.name == "checkpoints" and path.is_dir() and not (path / MANIFEST).exists():
        path = path.parent
    folder = RunFolder(path)
    if (path / MANIFEST).exists() or not folder.checkpoints_dir.is_dir():
        return path
    name = folder.latest_name()
    if name is not None:
        return folder.checkpoints_dir / name
    complete = folder.with_manifest()
    if not complete:
        raise CheckpointError(
            f"{path} is a run folder without a complete checkpoint; give a checkpoint "
            "folder, <run>/checkpoints/step_XXXXXXXX"
        )
    return complete[-1]


def task_results_file(checkpoint: Path) -> Path:
    """Where the downstream-task results of a checkpoint (or a conversion) are written.

    Beside the folder, not in it: a checkpoint's files are fixed by its manifest.
    """
    return checkpoint.parent / f"{checkpoint.name}.tasks.json"


def ablation_file(checkpoint: Path, renormalised: bool = False) -> Path:
    """Where ``ancre ablate`` writes its result for a checkpoint (or a conversion).

    Beside the folder, like the task results (``.ablation.json``, or
    ``.ablation-renormalised.json`` with ``--renormalise``).
    """
    suffix = "ablation-renormalised" if renormalised else "ablation"
    return checkpoint.parent / f"{checkpoint.name}.{suffix}.json"


def has_manifest(folder: Path) -> bool:
    """Whether a checkpoint folder's manifest reads (its files are not hashed)."""
    try:
        CheckpointFolder(folder).read_manifest()
    except CheckpointError:
        return False
    return True
