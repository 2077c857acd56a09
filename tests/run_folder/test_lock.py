"""Tests for ancre/run_folder/lock.py: one job at a time, with real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ancre.run_folder import RunLock, RunLockedError
from ancre.run_folder.lock import LockOwner

HOLD = """
import sys, time
from pathlib import Path
from ancre.run_folder import RunLock
lock = RunLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def start_holder(path) -> subprocess.Popen:
    """A process that holds the lock at ``path`` (returned once it does)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_owner_is_refused_while_the_first_runs_and_not_after(tmp_path):
    path = tmp_path / "run.lock"
    holder = start_holder(path)
    try:
        owner = json.loads(path.read_text())
        assert owner["pid"] == holder.pid
        with pytest.raises(RunLockedError) as info:
            RunLock(path).acquire()
        message = str(info.value)
        assert (
            f"pid {holder.pid}" in message and "still running" in message and str(path) in message
        )
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(path)  # the holder died without releasing: taken over
    lock.acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


def test_dead_owner_on_this_host_is_taken_over_with_a_warning(tmp_path, caplog):
    path = tmp_path / "run.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    me = LockOwner.me()
    stale = dict(me.__dict__, pid=int(dead.stdout), token="old")
    path.write_text(json.dumps(stale))
    with RunLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert "taking over" in caplog.text and f"pid {int(dead.stdout)}" in caplog.text


def test_a_killed_owner_not_yet_reaped_is_taken_over(tmp_path):
    # a zombie: the holder was SIGKILLed and nobody waited for it yet (as under a
    # container's PID 1 that does not reap, or a launcher killed with its workers)
    path = tmp_path / "run.lock"
    holder = start_holder(path)
    try:
        holder.kill()
        stat = f"/proc/{holder.pid}/stat"
        deadline = time.monotonic() + 30
        while open(stat).read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with RunLock(path):  # not refused as "still running"
            assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        holder.wait()


def test_a_live_lock_on_another_host_is_refused_when_its_heartbeat_moves(tmp_path):
    path = tmp_path / "run.lock"
    other = dict(LockOwner.me().__dict__, host="node-elsewhere", pid=1, token="theirs")
    path.write_text(json.dumps(other))
    beat = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os, time\nfor _ in range(40): time.sleep(0.1); os.utime({str(path)!r})",
        ]
    )
    try:
        with pytest.raises(RunLockedError, match="node-elsewhere.*heartbeat moves"):
            RunLock(path).acquire(wait_s=20)
    finally:
        beat.kill()
        beat.wait()


def test_an_abandoned_lock_on_another_host_is_taken_over_after_its_heartbeat_stops(tmp_path):
    path = tmp_path / "run.lock"
    other = dict(LockOwner.me().__dict__, host="node-elsewhere", pid=1, token="theirs")
    path.write_text(json.dumps(other))
    old = time.time() - 30
    os.utime(path, (old, old))
    lock = RunLock(path)
    lock.acquire(wait_s=10)
    assert json.loads(path.read_text())["host"] == LockOwner.me().host
    lock.release()


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    path = tmp_path / "run.lock"
    lock = RunLock(path)
    lock.acquire()
    path.write_text(json.dumps(dict(LockOwner.me().__dict__, token="someone else")))
    lock.release()
    assert path.exists()
