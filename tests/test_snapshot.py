"""Tests for ancre/snapshot.py: the versioned JSON topology snapshot."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ancre.snapshot import (
    SnapshotError,
    TopologySnapshot,
    matrix_table,
    read_snapshot,
    write_snapshot,
)


def uniform(num_layers: int = 3) -> TopologySnapshot:
    matrix = [
        [1 / (j + 1) if i <= j else 0.0 for i in range(num_layers + 1)] for j in range(num_layers)
    ]
    return TopologySnapshot(
        step=7,
        tokens=7 * 4096,
        num_layers=num_layers,
        parameterisation="uniform",
        temperature=None,
        logits=None,
        matrix=matrix,
        formula="h_{j+1} = y_j + sum_{i<=j} h_i / (j+1)",
    )


def softmax() -> TopologySnapshot:
    return TopologySnapshot(
        step=10,
        tokens=1234,
        num_layers=2,
        parameterisation="softmax",
        temperature=0.01,
        logits=[[0.0], [0.25, -0.5]],
        matrix=[[1.0, 0.0, 0.0], [0.75, 0.25, 0.0]],
        formula="h_{j+1} = y_j + sum_{i<=j} softmax(theta_j / tau)_i h_i",
    )


def write_raw(path: Path, snapshot: TopologySnapshot, **changes) -> Path:
    """Writes the snapshot's JSON object with some fields changed, bypassing the checks."""
    path.write_text(json.dumps({**snapshot.to_dict(), **changes}))
    return path


def frozen() -> TopologySnapshot:
    """A softmax matrix frozen at step 6 and pruned to one edge in row 1."""
    return replace(softmax(), matrix=[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], frozen_at=6,
                   edges=[[0], [0]])  # fmt: skip


@pytest.mark.parametrize(
    "snapshot", [uniform(), softmax(), frozen()], ids=["uniform", "softmax", "frozen"]
)
def test_round_trip(tmp_path: Path, snapshot: TopologySnapshot) -> None:
    path = tmp_path / "topology.json"
    write_snapshot(snapshot, path)
    assert read_snapshot(path) == snapshot
    obj = json.loads(path.read_text())
    assert (obj["format"], obj["version"]) == ("ancre-topology", 4)


def test_version_1_files_are_still_read_as_never_frozen(tmp_path: Path) -> None:
    later = ("own_output", "reads", "spread", "probe", "raw", "frozen_at", "edges", "form",
             "gates", "formula")  # fmt: skip
    old = {k: v for k, v in softmax().to_dict().items() if k not in later}
    path = tmp_path / "topology.json"
    path.write_text(json.dumps({**old, "version": 1}))
    assert read_snapshot(path) == softmax()  # its formula: the one of its parameterisation
    without_formula = {k: v for k, v in frozen().to_dict().items() if k != "formula"}
    path.write_text(json.dumps({**without_formula, "version": 1}))
    with pytest.raises(SnapshotError, match="need snapshot version 2"):
        read_snapshot(path)


def test_version_3_files_get_the_formula_of_their_parameterisation_and_form(tmp_path):
    gated = replace(softmax(), form="gated", gates=[0.5, -0.5])
    old = {k: v for k, v in gated.to_dict().items() if k != "formula"}
    path = tmp_path / "topology.json"
    path.write_text(json.dumps({**old, "version": 3}))
    read = read_snapshot(path)
    assert read.formula.startswith("h_{j+1} = y_j + g_j sum") and "softmax" in read.formula
    path.write_text(json.dumps({**old, "version": 3, "parameterisation": "sigmoid"}))
    with pytest.raises(SnapshotError, match="unknown parameterisation 'sigmoid'"):
        read_snapshot(path)


def test_cascaded_all_zero_accepted(tmp_path: Path) -> None:
    cascaded = replace(uniform(), parameterisation="cascaded", matrix=[[0.0] * 4] * 3)
    path = write_raw(tmp_path / "topology.json", cascaded)
    assert read_snapshot(path) == cascaded
    with pytest.raises(SnapshotError, match="sums to"):
        read_snapshot(write_raw(tmp_path / "bad.json", uniform(), parameterisation="cascaded"))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(SnapshotError, match="no such snapshot file") as info:
        read_snapshot(path)
    assert str(path) in str(info.value)


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "topology.json"
    path.write_text("{not json")
    with pytest.raises(SnapshotError, match="not a JSON file") as info:
        read_snapshot(path)
    assert str(path) in str(info.value)


BAD_FIELDS = {
    "wrong format": ({"format": "other-topology"}, "not an ancre-topology snapshot"),
    "wrong version": ({"version": 5}, "version 5"),
    "own output": ({"own_output": [1.0]}, "own_output must have 2 entries"),
    "reads above diagonal": ({"reads": [[1, 1, 0], [0, 1, 0], [0, 0, 1]]}, "reads has weight"),
    "negative spread": ({"spread": [[0, 0, 0], [-1, 0, 0]]}, "negative or non-finite"),
    "unknown field": ({"extra": 1}, "fields do not match"),
    "row sum": ({"matrix": [[1.0, 0.0, 0.0], [0.5, 0.25, 0.0]]}, "row 1 .* sums to 0.75"),
    "above diagonal": ({"matrix": [[0.9, 0.1, 0.0], [0.75, 0.25, 0.0]]}, "above the diagonal"),
    "too few rows": ({"matrix": [[1.0, 0.0, 0.0]]}, "must be 2 x 3"),
    "short row": ({"matrix": [[1.0, 0.0], [0.75, 0.25]]}, "must be 2 x 3"),
    "ragged logits": ({"logits": [[0.0, 0.0], [0.25]]}, "ragged"),
    "no formula": ({"formula": ""}, "no formula"),
    "formula before version 4": ({"version": 3}, "needs snapshot version 4"),
}


BAD_EDGES = {
    "edges per row": ({"edges": [[0]]}, "one row per block"),
    "edge past the diagonal": ({"edges": [[0], [0, 2]]}, "ascending states 0..1"),
    "weight off the edges": ({"matrix": [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]}, "outside its edges"),
}


@pytest.mark.parametrize("changes, message", BAD_EDGES.values(), ids=BAD_EDGES.keys())
def test_bad_edges_name_the_file(tmp_path: Path, changes: dict, message: str) -> None:
    path = write_raw(tmp_path / "step_00000010.json", frozen(), **changes)
    with pytest.raises(SnapshotError, match=message) as info:
        read_snapshot(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("changes, message", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_bad_snapshot_names_the_file(tmp_path: Path, changes: dict, message: str) -> None:
    path = write_raw(tmp_path / "step_00000010.json", softmax(), **changes)
    with pytest.raises(SnapshotError, match=message) as info:
        read_snapshot(path)
    assert str(info.value).startswith(f"{path}: ")


def test_write_refuses_a_bad_matrix(tmp_path: Path) -> None:
    path = tmp_path / "topology.json"
    with pytest.raises(SnapshotError, match="above the diagonal"):
        write_snapshot(replace(softmax(), matrix=[[0.5, 0.5, 0.0], [0.75, 0.25, 0.0]]), path)
    assert not path.exists()


def test_imports_nothing_heavy() -> None:
    code = "import ancre.snapshot, sys; print('torch' in sys.modules, 'numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_matrix_table_leaves_out_h_L_and_the_upper_triangle():
    matrix = [[1.0, 0.0, 0.0], [0.25, 0.75, 0.0]]
    text = matrix_table(matrix).splitlines()
    assert text[0].split() == ["h0", "h1"]  # no h2: no block reads it
    assert text[1].split() == ["blk0", "1.000"]
    assert text[2].split() == ["blk1", "0.250", "0.750"]
    markdown = matrix_table(matrix, markdown=True, digits=2).splitlines()
    assert markdown[0] == "| block | h0 | h1 |"
    assert markdown[2] == "| 0 | 1.00 |  |"
    assert markdown[3] == "| 1 | 0.25 | 0.75 |"
