"""Publishing files atomically: write a temporary file, fsync it, rename it into place.

A reader never sees a half-written file, and a process killed mid-write leaves at most
a stray ``.tmp`` file behind. This module imports nothing else from ``ancre``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that the file appears whole or not at all.

    Args:
        path: Destination; its folder must exist.
        data: The full content.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Writes UTF-8 text atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    """Writes an object as JSON atomically (see :func:`write_bytes_atomic`).

    Args:
        path: Destination.
        obj: A JSON-serialisable object.
        indent: Indentation for people to read; None writes one compact line.
    """
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


def fsync_dir(path: str | Path) -> None:
    """Flushes a folder's entries to disk so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
