"""What a run folder lets go of: old checkpoints, and an earlier run's files.

Old checkpoints go by ``checkpoint.keep_last``; an earlier run's files go when the
user asks to start over.

Nothing here deletes a file the run did not write: pruning touches complete
checkpoint folders only, and starting over deletes only :data:`RUN_ENTRIES`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ancre.run_folder.layout import RunFolder

logger = logging.getLogger("ancre")


def prune(folder: RunFolder, keep_last: int) -> list[Path]:
    """Deletes complete checkpoints older than the newest ``keep_last``.

    The checkpoint ``latest`` names is never deleted, nor is anything under
    ``superseded/`` or a topology snapshot.

    Args:
        folder: The run folder.
        keep_last: How many of the newest complete checkpoints to keep (0 keeps all).

    Returns:
        The deleted checkpoint folders.
    """
    if keep_last <= 0:
        return []
    named = folder.latest_or_none()
    complete = folder.with_manifest()
    doomed = [f for f in complete[:-keep_last] if f != named]
    for old in doomed:
        shutil.rmtree(old)
    return doomed


def start_over(folder: RunFolder, overwrite: bool) -> list[Path]:
    """Deletes what an earlier run wrote into the folder; leaves anything else.

    Args:
        folder: A run folder (the caller checked that it is one).
        overwrite: Delete ``superseded/`` too (the user asked to start over); without
            it, set-aside checkpoints stay.

    Returns:
        The deleted entries.
    """
    deleted = [e for e in folder.run_entries() if overwrite or e != folder.superseded_dir]
    for entry in deleted:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    left = [e for e in folder.entries() if e != folder.superseded_dir]
    if left:
        logger.warning(
            "%s also holds %s, which ancre did not write: left as they are",
            folder.root, ", ".join(p.name for p in left),
        )  # fmt: skip
    return deleted
