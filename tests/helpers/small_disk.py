"""A small disk for full-disk tests: a tmpfs mounted in a user and mount namespace.

``unshare --user --map-root-user --mount`` gives a test root's right to mount a tmpfs of
a chosen size, seen only by the command it runs; where the machine forbids it, the
tests that need it are skipped (:func:`can_mount_tmpfs`).
"""

from __future__ import annotations

import shutil
import subprocess

UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]
"""The prefix of a command that may mount a tmpfs (``mount -t tmpfs -o size=N tmpfs DIR``)."""


def can_mount_tmpfs() -> bool:
    """Whether this machine lets a test mount a tmpfs through :data:`UNSHARE`."""
    if shutil.which("unshare") is None:
        return False
    probe = UNSHARE + ["sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"]
    return subprocess.run(probe, capture_output=True).returncode == 0
