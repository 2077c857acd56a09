"""What a failed write looks like: the errors that mean a full disk, and torch.save's.

A checkpoint save and the making of a checkpoint's universal form both write with
``torch.save``, which reports a failed write as a ``RuntimeError`` without the errno.
:func:`write_error` turns it back into the ``OSError`` it stands for, so that a full disk
ends a run with the same message and exit code (6) whichever write found it.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""Write errors that mean the disk (or the quota, or the file size limit) is full."""
NEARLY_FULL_BYTES = 64 << 20
"""Free space under which a failed write is put down to a full disk."""
WRITER_FAILURES = ("PytorchStreamWriter", "write failed", "inline_container")
"""What torch.save's RuntimeError says when a write failed."""


def write_error(error: RuntimeError, folder: Path) -> OSError | None:
    """The OSError behind a RuntimeError of torch.save's writer, or None if it is another.

    torch.save reports a failed write as a RuntimeError without the errno (``file write
    failed``, ``unexpected pos ...``); a disk with almost no space left is taken as the
    cause, and any writer failure as an I/O error otherwise.

    Args:
        error: What torch.save raised.
        folder: Where it was writing (the nearest existing parent is asked for space).
    """
    text = str(error)
    probe = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    if shutil.disk_usage(probe).free < NEARLY_FULL_BYTES:
        code = errno.ENOSPC
    elif any(mark in text for mark in WRITER_FAILURES):
        code = errno.EIO
    else:
        return None
    return OSError(code, f"{os.strerror(code)} ({text.splitlines()[0][:200]})", str(folder))
