"""Stopping on request: SIGTERM, SIGINT and SIGUSR1 end a run with a checkpoint.

Clusters stop jobs with signals: SLURM sends SIGTERM on preemption and ``scancel``
(and a chosen signal, here SIGUSR1, before the time limit), a terminal sends SIGINT
on Ctrl-C. The first such signal on any process is a *stop request*: the trainer's
processes agree on it at the next step boundary (one all-reduce per step), write a
complete checkpoint together and exit with :data:`EXIT_STOPPED`. A second signal,
more than :data:`REPEAT_AFTER_S` after the first, exits at once with code 128 +
signal: the last complete checkpoint stays intact, because ``latest`` only ever names
a complete one. (Launchers forward a signal they receive to every worker, so a worker
may get the same signal twice within milliseconds: that counts once.)
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from ancre.stop_signals import handled_signals

EXIT_STOPPED = 5
"""Exit code of a run that stopped on a signal after writing a checkpoint."""
REPEAT_AFTER_S = 2.0
"""A signal this soon after the first is the same request, forwarded twice."""


class StopRequested(Exception):
    """The run stopped on a signal, at a step boundary, after writing a checkpoint.

    Attributes:
        signal_name: The signal this process received (``SIGTERM``), or None when it
            came to another process.
        step: The step the run stopped after; None when it stopped before training.
        checkpoint: The last complete checkpoint (written at ``step`` unless that step
            was skipped), or None when the run has none.
        received_at: ``time.monotonic()`` when the signal came (None: another process's).
    """

    def __init__(
        self,
        signal_name: str | None,
        step: int | None,
        checkpoint: Path | None,
        received_at: float | None,
    ) -> None:
        self.signal_name = signal_name
        self.step = step
        self.checkpoint = checkpoint
        self.received_at = received_at
        super().__init__(self.describe())

    def describe(self) -> str:
        """What happened, with the time since the signal, for the last line of the run."""
        what = (
            f"{self.signal_name} received"
            if self.signal_name
            else "another process was told to stop"
        )
        where = (
            f"the last complete checkpoint is {self.checkpoint}"
            if self.checkpoint is not None
            else "the run folder was not touched"
            if self.step is None
            else "no checkpoint could be written"
        )
        when = "before training began" if self.step is None else f"after step {self.step}"
        since = (
            f" ({time.monotonic() - self.received_at:.1f} s after the signal)"
            if self.received_at is not None
            else ""
        )
        return f"{what}: stopped {when}; {where}{since}. Start the same command again to resume"


class StopSignals:
    """Turns the first stop signal into a request and a repeated one into an exit.

    Install it in the main thread of every training process; the trainer reads
    :attr:`requested` at each step boundary.

    Args:
        on_abort: Called just before a repeated signal exits the process (e.g. to
            release the run folder's lock); it must not block.
    """

    def __init__(self, on_abort: Callable[[], None] | None = None) -> None:
        self.on_abort = on_abort
        self.signal_name: str | None = None
        self.received_at: float | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self.signal_name is not None

    def seconds_since(self) -> float:
        """Seconds since the first signal (0 when none came)."""
        return 0.0 if self.received_at is None else time.monotonic() - self.received_at

    def install(self) -> StopSignals:
        """Installs the handlers (main thread only); returns self."""
        for sig in handled_signals():
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        """Puts back the handlers that were there before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        now = time.monotonic()
        if self.received_at is None:
            self.signal_name, self.received_at = name, now
            _say(
                f"ancre: {name} received: stopping after the current step with a checkpoint "
                f"(send it again to exit at once)"
            )
        elif now - self.received_at > REPEAT_AFTER_S:
            _say(
                f"ancre: {name} received again: exiting now; the last complete checkpoint is intact"
            )
            if self.on_abort is not None:
                self.on_abort()
            os._exit(128 + signum)


def _say(message: str) -> None:
    """Writes a line to stderr without the logging module (safe in a signal handler)."""
    try:
        os.write(2, (message + "\n").encode())
    except OSError:
        pass


_installed: StopSignals | None = None


def stop_signals() -> StopSignals:
    """This process's stop-signal handlers, installed on the first call.

    Signal handlers belong to the process, so there is one :class:`StopSignals` per
    process: ``ancre train`` installs it first thing, before the heavy imports, and
    the run picks it up.
    """
    global _installed
    if _installed is None:
        _installed = StopSignals().install()
    return _installed


def release_stop_signals() -> None:
    """Puts back the handlers that were there before :func:`stop_signals`."""
    global _installed
    if _installed is not None:
        _installed.restore()
        _installed = None
