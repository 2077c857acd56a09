"""The run folder's lock: one job at a time writes into a run folder.

The lock is a small JSON file, ``<run>/run.lock``, created atomically (``O_EXCL``) by
the main process before it writes anything into the folder, and removed when the run
ends, whatever the reason, except when the process is killed outright. It names its
owner (host, pid, the process's start time, when it was taken) and the owner touches
it every :data:`HEARTBEAT_S` seconds while it runs.

A second job that finds the lock:

- stops at once with a message naming the owner when the owner is alive: a process
  on this host that still runs, or a lock on another host whose heartbeat moves;
- takes the lock over, with a warning, when its owner is dead: a process on this host
  that no longer runs (the pid is gone or belongs to a newer process), or a lock on
  another host whose heartbeat has stopped for :data:`STALE_AFTER_S` seconds. A job
  requeued on another node after its predecessor was killed waits for that long.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger("ancre")

HEARTBEAT_S = 15.0
"""How often the owner touches the lock file."""
STALE_AFTER_S = 120.0
"""A lock of another host whose file has not been touched for this long is abandoned."""
GARBAGE_AFTER_S = 5.0
"""A lock file that has not parsed for this long is torn (its writer was killed)."""
SETTLE_S = 0.5
"""Pause after a takeover before reading the lock back (two jobs taking over at once)."""


class RunLockedError(RuntimeError):
    """Another job owns the run folder."""


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock.

    Attributes:
        host: Host name of the owner's machine.
        pid: Process id of the owner (the run's main process).
        process_start: The process's start time in clock ticks since boot (Linux), to
            tell the owner from a later process that got the same pid; None elsewhere.
        since: When the lock was taken, as UTC ISO 8601.
        token: A random token that tells this lock from any other.
    """

    host: str
    pid: int
    process_start: int | None
    since: str
    token: str

    @classmethod
    def me(cls) -> LockOwner:
        """The owner this process would be."""
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            process_start=_process_start(os.getpid()),
            since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            token=secrets.token_hex(8),
        )

    def describe(self) -> str:
        """``pid 123 on host node-7 since 2026-11-25T10:00:00Z``."""
        return f"pid {self.pid} on host {self.host} since {self.since}"

    def is_running_here(self) -> bool:
        """On this host: whether the owning process still runs (and is the same process).

        A process that has ended but was not yet reaped (a zombie: its parent, or a
        container's PID 1 that does not reap, has not waited for it) no longer runs.
        """
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, under another user
        fields = _process_stat(self.pid)
        if fields is None:
            return True  # no /proc: it exists, and nothing tells more
        if fields[0] in ("Z", "X"):  # ended: a zombie, or dead
            return False
        return self.process_start is None or int(fields[19]) == self.process_start


def _process_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces
    return stat.rsplit(")", 1)[1].split()


def _process_start(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None where unreadable."""
    fields = _process_stat(pid)
    return None if fields is None else int(fields[19])


def _read_owner(path: Path) -> LockOwner | None:
    """The owner a lock file names, or None when it is unreadable or half-written."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockOwner(**data)
    except (OSError, ValueError, TypeError):
        return None


class RunLock:
    """The lock of one run folder, held by the run's main process.

    Use as a context manager, or call :meth:`acquire` and :meth:`release`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.owner: LockOwner | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self, wait_s: float = STALE_AFTER_S) -> None:
        """Takes the lock, taking over one whose owner is dead.

        Args:
            wait_s: How long to watch another host's lock for a heartbeat before
                taking it over.

        Raises:
            RunLockedError: A live job owns the folder; the message names it.
        """
        me = LockOwner.me()
        watched: tuple[LockOwner, float] | None = None
        deadline = time.monotonic() + wait_s + 10 * HEARTBEAT_S
        while not self._create(me):
            if time.monotonic() > deadline:
                raise RunLockedError(f"{self.path}: could not take the run folder's lock")
            owner, mtime = _read_owner(self.path), self._mtime()
            if mtime is None:
                continue  # released meanwhile: try again
            age = time.time() - mtime
            if owner is None:
                if age > GARBAGE_AFTER_S:  # not a lock being written: a torn or foreign file
                    if self._take_over(me, None, "left an unreadable lock file"):
                        break
                else:
                    time.sleep(0.1)
                continue
            if owner.host == me.host:
                if owner.is_running_here():
                    raise self._locked(owner, "it is still running")
                if self._take_over(me, owner, "is no longer running"):
                    break
                continue
            if watched is None:
                watched = (owner, mtime)
                if age < wait_s:
                    logger.warning(
                        "%s is held by %s; waiting up to %.0f s for its heartbeat to stop",
                        self.path, owner.describe(), wait_s - age,
                    )  # fmt: skip
            elif watched != (owner, mtime):
                raise self._locked(owner, "its heartbeat moves")
            if age >= wait_s:
                if self._take_over(me, owner, f"has not touched it for {age:.0f} s"):
                    break
                continue
            time.sleep(min(1.0, wait_s / 10))
        self.owner = me
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="ancre-lock", daemon=True)
        self._heartbeat.start()

    def release(self) -> None:
        """Removes the lock if this process still owns it (not a forked child of it)."""
        self._stop.set()
        if self.owner is None or self.owner.pid != os.getpid():
            return
        if self._still_mine(self.owner):
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self.owner = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _create(self, me: LockOwner) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(me)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _take_over(self, me: LockOwner, owner: LockOwner | None, why: str) -> bool:
        """Replaces a dead owner's lock with ours; True if it is still ours a moment later."""
        who = owner.describe() if owner else "an unreadable owner"
        logger.warning("taking over the lock %s: its owner (%s) %s", self.path, who, why)
        tmp = self.path.with_name(f".{self.path.name}.{me.pid}.tmp")
        tmp.write_text(json.dumps(asdict(me)) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        time.sleep(SETTLE_S)
        return self._still_mine(me)

    def _still_mine(self, me: LockOwner) -> bool:
        owner = _read_owner(self.path)
        return owner is not None and owner.token == me.token

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def _locked(self, owner: LockOwner, why: str) -> RunLockedError:
        return RunLockedError(
            f"{self.path.parent} is in use by another job: {owner.describe()} ({why}). "
            f"Wait for it to end, or choose another run.name; if you are sure that job is "
            f"gone, delete {self.path}"
        )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)
