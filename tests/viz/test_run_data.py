import json

import pytest

from ancre.snapshot import SnapshotError
from ancre.viz.run_data import (
    VizError,
    evenly_spaced,
    load_run,
    select_snapshot,
)
from tests.helpers.viz_builders import softmax_matrix


def test_torn_metrics_lines_are_skipped_with_a_warning(make_run, caplog):
    folder = make_run("r", [softmax_matrix(3, seed=0)])
    (folder / "metrics.jsonl").write_text('{"step": 1}\n{oops\n{"step": 2}\n{"step": 3, "lo')
    assert [r["step"] for r in load_run(folder).records] == [1, 2]
    assert "skipped 1 torn line(s) (line 2)" in caplog.text


def test_missing_run_folder_and_empty_topology(tmp_path):
    with pytest.raises(VizError, match="nope: no such run folder"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VizError, match="no topology snapshots"):
        load_run(tmp_path / "empty")


def test_run_snapshots_in_step_order_and_selection(make_run):
    run = load_run(make_run("r", [softmax_matrix(3, seed=k) for k in range(12)]))
    assert [s.step for s in run.snapshots] == list(range(0, 120, 10))
    assert run.num_layers == 3 and run.name == "r"
    assert select_snapshot(run.snapshots, None).step == 110
    assert select_snapshot(run.snapshots, 30).step == 30
    with pytest.raises(VizError, match="no topology snapshot at step 35"):
        select_snapshot(run.snapshots, 35)
    assert [s.step for s in evenly_spaced(run.snapshots, 6)] == [0, 20, 40, 70, 90, 110]


def test_evenly_spaced_edges():
    assert evenly_spaced([1, 2, 3], 6) == [1, 2, 3]
    assert evenly_spaced(list(range(10)), 1) == [9]
    assert evenly_spaced(list(range(10)), 2) == [0, 9]
    assert evenly_spaced([], 3) == []


def test_a_snapshot_file_is_a_run(make_run):
    path = make_run("r", [softmax_matrix(2)]) / "topology" / "step_00000000.json"
    run = load_run(path)
    assert len(run.snapshots) == 1 and run.records == []


def test_wrong_version_names_the_file(make_run):
    run = make_run("r", [softmax_matrix(2)])
    path = run / "topology" / "step_00000000.json"
    obj = json.loads(path.read_text())
    obj["version"] = 9
    path.write_text(json.dumps(obj))
    with pytest.raises(SnapshotError, match="step_00000000.json: snapshot version 9"):
        load_run(run)
