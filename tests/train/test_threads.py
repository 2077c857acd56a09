"""Tests for ancre/train/threads.py: CPU threads that fit the machine."""

from __future__ import annotations

import os

from ancre.train.threads import affinity_cores, choose_threads, idle_cores, local_processes


def test_the_environment_wins_then_the_setting():
    assert choose_threads(3, {"OMP_NUM_THREADS": "1"}, 2, 0.0).threads is None
    assert choose_threads(3, {}, 2, 0.0).threads == 3


def test_the_cores_are_shared_among_the_processes_of_the_node():
    cores = affinity_cores()
    choice = choose_threads(0, {}, 2, None)
    assert choice.threads == max(1, cores // 2)
    assert f"{cores} core(s) in the affinity mask / 2 process(es)" in choice.reason


def test_busy_cores_are_left_to_the_work_that_uses_them():
    cores = affinity_cores()
    busy = choose_threads(0, {}, 1, idle=1.2)
    assert busy.threads == 1 and ("1.2 idle" in busy.reason or cores == 1)
    assert choose_threads(0, {}, 1, idle=float(cores)).threads == cores


def test_launchers_say_how_many_processes_share_the_node():
    assert local_processes({"LOCAL_WORLD_SIZE": "4"}) == 4
    assert local_processes({"LOCAL_SIZE": "2"}) == 2
    assert local_processes({}) == 1


def test_idle_cores_are_measured_between_zero_and_the_core_count():
    idle = idle_cores(0.05)
    assert idle is not None  # Linux has /proc/stat
    assert 0.0 <= idle <= (os.cpu_count() or 1) + 1e-6
