"""The signals that ask a run to stop: SIGTERM, SIGINT and SIGUSR1.

SLURM sends SIGTERM on preemption and ``scancel`` (and, here, SIGUSR1 before the time
limit); a terminal sends SIGINT on Ctrl-C. The trainer process turns them into a stop
at the next step boundary (``ancre.train.preemption``); helper processes, such as
DataLoader workers, ignore them and leave the decision to it. This module imports
nothing else from ``ancre``.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def ignore_stop_signals() -> None:
    """Makes this process ignore the stop signals (a helper of the trainer process)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
