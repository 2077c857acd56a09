"""``train.profile``: a window of optimiser steps recorded with torch.profiler.

Every process records the steps ``first .. first + count - 1`` and writes into the run
folder's ``profile/``:

- ``trace_process_00000.json``: the Chrome trace (chrome://tracing or ui.perfetto.dev),
  every step in its own ``ProfilerStep#N`` range and the topology mix in
  ``ancre.topology_mix`` ranges (``ancre.model.topology.base.MIX_RANGE``);
- ``ops_process_00000.txt``: the operators' summary, by total time on the device that ran
  them;
- on a GPU, ``cuda_memory_process_00000.pickle``: a CUDA memory snapshot of the window
  (https://pytorch.org/memory_viz reads it).

A resumed run past the window records nothing; one that stopped inside it records
the steps left of it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

logger = logging.getLogger("ancre")

SUMMARY_ROWS = 40
"""Operators listed in the summary."""


class StepProfiler:
    """Starts the profiler before the window's first step and writes it after its last.

    Args:
        window: ``train.profile``: [first step, number of steps], or empty for none.
        folder: Where the files go (the run folder's ``profile/``).
        rank: This process's rank (in the file names).
    """

    def __init__(self, window: list[int], folder: Path, rank: int) -> None:
        self.first, self.last = (window[0], window[0] + window[1] - 1) if window else (0, -1)
        self.folder = folder
        self.rank = rank
        self.cuda = torch.cuda.is_available()
        self._profile: profile | None = None
        self._range: torch.profiler.record_function | None = None

    def before_step(self, step: int) -> None:
        """Called before optimiser step ``step`` (1-based) runs."""
        if self._profile is None and self.first <= step <= self.last:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
            self._profile = profile(activities=activities, profile_memory=True)
            self._profile.__enter__()
            if self.cuda:
                torch.cuda.memory._record_memory_history(max_entries=100_000)
            logger.info("profiling steps %d to %d into %s", step, self.last, self.folder)
        if self._profile is not None:
            self._range = torch.profiler.record_function(f"ProfilerStep#{step}")
            self._range.__enter__()

    def after_step(self, step: int) -> None:
        """Called after optimiser step ``step``; writes the files after the window's last."""
        if self._profile is None:
            return
        assert self._range is not None
        self._range.__exit__(None, None, None)
        if step >= self.last:
            self._write()

    def close(self) -> None:
        """Writes what was recorded when the run ends inside the window (a stop)."""
        if self._profile is not None:
            self._write()

    def _write(self) -> None:
        assert self._profile is not None
        self._profile.__exit__(None, None, None)
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"process_{self.rank:05d}"
        trace = self.folder / f"trace_{name}.json"
        self._profile.export_chrome_trace(str(trace))
        sort = "self_cuda_time_total" if self.cuda else "self_cpu_time_total"
        table = self._profile.key_averages().table(sort_by=sort, row_limit=SUMMARY_ROWS)
        (self.folder / f"ops_{name}.txt").write_text(table + "\n")
        if self.cuda:
            torch.cuda.memory._dump_snapshot(str(self.folder / f"cuda_memory_{name}.pickle"))
            torch.cuda.memory._record_memory_history(enabled=None)
        self._profile = None
        logger.info("profile written: %s and its operator summary", trace)
