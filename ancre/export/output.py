"""The output folder of ``ancre convert``, in either format: checked, then marked.

Every output folder of ``ancre convert`` (``--format ancre`` and ``--format hf``)
starts with its marker, ``ancre-export.json`` (what wrote it, from what, which files): a
non-empty folder is replaced only when it carries one, so a folder of the user's own
files is never written into, whatever their names.
"""

from __future__ import annotations

from pathlib import Path

from ancre.atomic import write_json_atomic
from ancre.run_folder import EXPORT_MARKER


def check_output_folder(
    source: Path, out_dir: Path, written: tuple[str, ...], what: str = "conversion"
) -> None:
    """Refuses an output folder inside ``source``, or one holding files ``what`` does not write.

    Args:
        source: The checkpoint or folder read.
        out_dir: The folder to write.
        written: The names a ``what`` writes (an earlier one's folder is replaced).
        what: ``conversion`` or ``export``, for the message.

    Raises:
        FileExistsError: Writing there could change ``source`` (a checkpoint's manifest
            would no longer verify) or mix with files it did not write.
    """
    src, target = source.resolve(), out_dir.resolve()
    if target == src or src in target.parents:
        raise FileExistsError(
            f"{out_dir} is inside {source}: writing there would change it (a checkpoint's "
            "manifest would no longer verify); choose a folder outside it"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file; give a folder to write the {what} to")
    entries = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if entries and not (out_dir / EXPORT_MARKER).is_file():
        raise FileExistsError(
            f"{out_dir} is not empty and no ancre convert wrote it (it has no {EXPORT_MARKER}; "
            f"it holds {', '.join(entries[:5])}{', ...' if len(entries) > 5 else ''}): "
            "nothing was written. Give an empty or new folder (an export of an older ancre "
            "has no marker: delete it yourself to replace it)"
        )
    foreign = [name for name in entries if name not in written]
    if foreign:
        raise FileExistsError(
            f"{out_dir} holds files a{'n' if what[0] in 'aeiou' else ''} {what} does not write "
            f"({', '.join(foreign[:5])}); give an empty or new folder (or an earlier "
            f"{what}'s, which is replaced)"
        )


def write_export_marker(out_dir: Path, what: str, source: Path, written: tuple[str, ...]) -> None:
    """Creates ``out_dir`` and writes its marker first (``ancre-export.json``).

    Args:
        out_dir: The output folder.
        what: ``conversion`` or ``export``.
        source: The checkpoint or conversion read.
        written: The files the output holds once complete.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = {"format": "ancre-export", "what": what, "source": str(source.resolve()),
              "files": sorted(written)}  # fmt: skip
    write_json_atomic(out_dir / EXPORT_MARKER, marker)
