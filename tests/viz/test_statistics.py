import csv
import math

import numpy as np
import pytest

from ancre.viz.statistics import CSV_COLUMNS, block_statistics, write_statistics_csv
from tests.helpers.viz_builders import make_snapshot


def test_statistics_of_a_hand_made_matrix():
    p = [[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0.0, 0.75, 0.25, 0]]
    stats = block_statistics(p)
    np.testing.assert_allclose(stats.predecessor_weight, [1.0, 0.5, 0.25])
    np.testing.assert_allclose(stats.embedding_weight, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(stats.mean_source_distance, [0.0, 0.5, 0.75 * 1])
    h2 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    np.testing.assert_allclose(stats.entropy, [0.0, math.log(2), h2])


def test_uniform_rows_have_maximal_entropy():
    n = 5
    p = np.zeros((n, n + 1))
    for j in range(n):
        p[j, : j + 1] = 1 / (j + 1)
    stats = block_statistics(p)
    np.testing.assert_allclose(stats.entropy, np.log(np.arange(1, n + 1)))
    np.testing.assert_allclose(stats.mean_source_distance, np.arange(n) / 2)


def test_cascaded_and_fixed_rows():
    zero = block_statistics(np.zeros((3, 4)))
    assert np.all(np.isnan(zero.entropy))
    np.testing.assert_allclose(zero.mean_source_distance, 0.0)
    fixed = block_statistics([[1.0, 0, 0], [1.0, 1.0, 0]])  # rows need not sum to one
    np.testing.assert_allclose(fixed.entropy, [0.0, math.log(2)])
    np.testing.assert_allclose(fixed.mean_source_distance, [0.0, 1.0])


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match="L x \\(L\\+1\\)"):
        block_statistics([[1.0, 0.0], [0.5, 0.5]])


def test_csv_has_one_row_per_step_and_block(tmp_path):
    snapshots = [make_snapshot([[1.0, 0, 0], [0.5, 0.5, 0]], step=s) for s in (0, 10, 20)]
    snapshots.append(make_snapshot([[0.0, 0, 0], [0.0, 0.0, 0]], step=30, kind="cascaded"))
    path = write_statistics_csv(snapshots, tmp_path / "s.csv")
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(int(r["step"]), int(r["block"])) for r in rows] == [
        (s, j) for s in (0, 10, 20, 30) for j in range(2)
    ]
    assert float(rows[3]["predecessor_weight"]) == 0.5
    assert int(rows[3]["tokens"]) == 10 * 2048
    assert rows[-1]["entropy"] == ""  # undefined for an all-zero row
