"""The signals that ask a run to stop: SIGTERM, SIGINT, SIGUSR1 and SIGHUP.

SLURM sends SIGTERM on preemption and ``scancel`` (and, here, SIGUSR1 before the time
limit); a terminal sends SIGINT on Ctrl-C, and SIGHUP when it closes (a process
started under ``nohup``, which ignores SIGHUP, keeps ignoring it). The trainer process
turns them into a stop at the next step boundary (``ancre.train.preemption``); helper
processes, such as DataLoader workers, ignore them and leave the decision to it. This
module imports nothing else from ``ancre``.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)


def handled_signals() -> tuple[signal.Signals, ...]:
    """The stop signals this process handles: SIGHUP only where it is not ignored (nohup)."""
    hang_up_ignored = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    return tuple(s for s in STOP_SIGNALS if not (s == signal.SIGHUP and hang_up_ignored))


def ignore_stop_signals() -> None:
    """Makes this process ignore the stop signals (a helper of the trainer process)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
