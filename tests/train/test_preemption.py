"""Tests for ancre/train/preemption.py: a stop signal is a request, a repeated one an exit."""

from __future__ import annotations

import signal
import subprocess
import sys

from ancre.train.preemption import EXIT_STOPPED, REPEAT_AFTER_S, StopRequested

PROGRAM = """
import os, signal, sys, time
from ancre.train.preemption import StopSignals
signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal, even under nohup
stop = StopSignals(on_abort=lambda: print("released the lock", flush=True)).install()
sig = getattr(signal, sys.argv[1])
os.kill(os.getpid(), sig)
time.sleep(0.05)
print("requested", stop.requested, stop.signal_name, flush=True)
os.kill(os.getpid(), sig)  # forwarded twice by a launcher: the same request
time.sleep(0.05)
print("still running", flush=True)
time.sleep(float(sys.argv[2]))
os.kill(os.getpid(), sig)  # a second request: exit at once
time.sleep(5)
print("not reached", flush=True)
"""


def run(signal_name: str, pause: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, signal_name, str(pause)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_first_signal_requests_a_stop_and_a_later_one_exits_at_once():
    for name in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP"):
        result = run(name, REPEAT_AFTER_S + 0.5)
        assert result.returncode == 128 + getattr(signal, name), result.stderr
        lines = result.stdout.splitlines()
        assert lines == [f"requested True {name}", "still running", "released the lock"]
        assert "stopping after the current step with a checkpoint" in result.stderr
        assert "exiting now; the last complete checkpoint is intact" in result.stderr


def test_a_process_started_under_nohup_keeps_ignoring_sighup():
    program = (
        "import os, signal, time\n"
        "from ancre.train.preemption import StopSignals\n"
        "stop = StopSignals().install()\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"
        "time.sleep(0.05)\n"
        "print('requested', stop.requested, flush=True)\n"
    )
    result = subprocess.run(
        ["nohup", sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "requested False" in result.stdout, result.stderr


def test_stop_message_says_what_is_intact():
    stopped = StopRequested("SIGTERM", 7, None, None)
    assert "stopped after step 7" in str(stopped) and "no checkpoint" in str(stopped)
    assert EXIT_STOPPED == 5
