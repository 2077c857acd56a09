"""Rewinding a run folder to the checkpoint a run resumes from.

What a run wrote after that checkpoint is of two kinds:

- progress that no complete checkpoint holds (metrics lines, snapshots, checkpoint
  folders a kill left half-written): the resumed run writes it again, identically,
  so it is dropped;
- complete checkpoints newer than the resume point (``checkpoint.resume=PATH`` to an
  older checkpoint of the same run): they are never deleted. They move, with the
  snapshots after the resume point and a copy of the whole metrics.jsonl, into
  ``superseded/after_step_XXXXXXXX_<time>/``, and the log names the folder.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from ancre.atomic import write_text_atomic
from ancre.run_folder.layout import RunFolder, has_manifest
from ancre.run_folder.metrics import parse_record, record_step

logger = logging.getLogger("ancre")


def later_complete_checkpoints(folder: RunFolder, step: int) -> list[Path]:
    """Checkpoint folders after ``step`` whose manifest reads: what a rewind sets aside."""
    return [f for s, f in folder.step_folders() if s > step and has_manifest(f)]


def rewind(folder: RunFolder, checkpoint: Path, step: int) -> Path | None:
    """Readies a run folder to continue from ``checkpoint`` (taken after ``step`` steps).

    Args:
        folder: The run folder.
        checkpoint: The complete checkpoint the run resumes from (inside ``folder``
            or another run's).
        step: Its step.

    Returns:
        The folder that received newer complete checkpoints, or None when there were
        none.
    """
    later = later_complete_checkpoints(folder, step)
    aside = None
    if later:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        aside = folder.superseded_dir / f"after_step_{step:08d}_{stamp}"
        (aside / "checkpoints").mkdir(parents=True)
        (aside / "topology").mkdir()
        if folder.metrics_file.exists():
            shutil.copy2(folder.metrics_file, aside / "metrics.jsonl")
        for old in later:
            old.rename(aside / "checkpoints" / old.name)
        logger.warning(
            "moved %d newer complete checkpoint(s) (%s) to %s: the run resumes from %s",
            len(later), ", ".join(f.name for f in later), aside, checkpoint,
        )  # fmt: skip
    _truncate_metrics(folder.metrics_file, step)
    for snap_step, path in folder.snapshots():
        if snap_step > step:
            if aside is not None:
                path.rename(aside / "topology" / path.name)
            else:
                path.unlink()
    for _, torn in folder.step_folders():
        if torn.parent == folder.checkpoints_dir and torn != checkpoint and not has_manifest(torn):
            logger.warning("removing %s: a checkpoint this run never completed", torn)
            shutil.rmtree(torn)
    if checkpoint.parent == folder.checkpoints_dir and folder.latest_or_none() != checkpoint:
        folder.publish(checkpoint)
    return aside


def _truncate_metrics(path: Path, step: int) -> None:
    """Keeps the lines of steps up to ``step``; drops later and torn lines."""
    if not path.exists():
        return
    kept, torn = [], 0
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        record = parse_record(line)
        if record is None:
            torn += 1
        elif record_step(record) <= step:
            kept.append(line)
    if torn:
        logger.warning("%s: dropped %d torn line(s)", path, torn)
    write_text_atomic(path, "".join(line + "\n" for line in kept))
