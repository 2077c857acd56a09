"""train.profile in a real run: the window's Chrome trace and operator summary in the
run folder, the topology mix in its own range, and windows the config refuses."""

from __future__ import annotations

import json

import pytest

from tests.helpers.training import cli_error, train_args, train_run

pytestmark = pytest.mark.slow


def test_a_profiled_window_writes_its_trace_and_summary(tmp_path, subprocess_env, sample_tokenizer):
    args = train_args(tmp_path, "p", sample_tokenizer.path, "train.profile=[3,2]")
    train_run(*args, env=subprocess_env)
    folder = tmp_path / "p" / "profile"
    assert sorted(p.name for p in folder.iterdir()) == [
        "ops_process_00000.txt",
        "trace_process_00000.json",
    ]
    events = json.loads((folder / "trace_process_00000.json").read_text())["traceEvents"]
    names = {event.get("name") for event in events}
    assert {"ProfilerStep#3", "ProfilerStep#4"} <= names
    assert not {"ProfilerStep#2", "ProfilerStep#5"} & names  # the window only
    mixes = [e for e in events if e.get("name") == "ancre.topology_mix"]
    assert len(mixes) >= 2 * 6  # the tiny preset's six mixes, forward, in each step
    summary = (folder / "ops_process_00000.txt").read_text()
    assert "aten::mm" in summary and "Self CPU" in summary  # the operators, by time


@pytest.mark.parametrize(
    ("window", "error"),
    [
        ("[7,3]", "records steps 7 to 9, past the end of the run (train.steps=8)"),
        ("[0,2]", "give [first step, number of steps], both 1 or more"),
        ("[3]", "give [first step, number of steps]"),
    ],
)
def test_a_window_outside_the_run_is_refused(tmp_path, capsys, sample_tokenizer, window, error):
    line = cli_error(
        capsys,
        "train",
        *train_args(tmp_path, "p", sample_tokenizer.path, f"train.profile={window}"),
    )
    assert "train.profile" in line and error in line
    assert not (tmp_path / "p").exists()  # refused before anything was made
