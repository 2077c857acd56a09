"""Every figure renders for one layer, 48 layers, cascaded and fixed topologies."""

import numpy as np
import pytest
from matplotlib.image import imread

from ancre.viz.animation import write_animation
from ancre.viz.canvas import save_figure
from ancre.viz.compare import compare_runs
from ancre.viz.heatmap import evolution_figure, matrix_figure
from ancre.viz.losses import loss_figure
from ancre.viz.statplots import depth_figure, training_figure
from ancre.viz.wiring import strongest_connections, wiring_figure
from tests.helpers.viz_builders import make_snapshot, metrics_lines, softmax_matrix


def fixed_matrix(num_layers):
    matrix = np.zeros((num_layers, num_layers + 1))
    matrix[:, 0] = 0.5  # edges 0:j with weight 0.5 ...
    matrix[np.arange(num_layers), np.arange(num_layers)] = 1.0  # ... and the chain
    return matrix.tolist()


CASES = {
    "L1": ([[1.0, 0.0]], "softmax"),
    "L48": (softmax_matrix(48, seed=1), "softmax"),
    "cascaded": ([[0.0] * 5 for _ in range(4)], "cascaded"),
    "fixed": (fixed_matrix(5), "fixed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_figure_renders(tmp_path, case):
    matrix, kind = CASES[case]
    snapshots = [make_snapshot(matrix, step=s, kind=kind) for s in (0, 10)]
    figures = {
        "matrix": matrix_figure(snapshots[-1], case),
        "evolution": evolution_figure(snapshots, case),
        "wiring": wiring_figure(snapshots[-1], case),
        "depth": depth_figure(snapshots[-1], snapshots[0], case),
        "training": training_figure(snapshots, case),
    }
    for stem, figure in figures.items():
        formats = ["png", "svg"] if case == "fixed" else ["png"]
        (png, *svg) = save_figure(figure, tmp_path, stem, formats)
        image = imread(png)
        width, height = figure.get_size_inches() * figure.dpi
        assert image.shape[:2] == (round(height), round(width)), stem
        assert image[..., :3].var() > 0.005, f"{stem} is blank"
        assert all(path.read_text().lstrip().startswith("<?xml") for path in svg)
    gif = write_animation(snapshots, tmp_path, case)
    assert gif.suffix == ".gif" and gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


def test_strongest_connections_top_k_and_threshold():
    p = [[1.0, 0, 0, 0], [0.3, 0.7, 0, 0], [0.1, 0.6, 0.3, 0]]
    top1 = strongest_connections(p, top_k=1)
    assert sorted((c.block, c.source) for c in top1) == [(0, 0), (1, 1), (2, 1)]
    top2 = strongest_connections(p, top_k=2)
    assert len(top2) == 5 and abs(top2[-1].weight) == 1.0  # strongest last
    assert sorted((c.block, c.source) for c in strongest_connections(p, threshold=0.3)) == [
        (0, 0),
        (1, 0),
        (1, 1),
        (2, 1),
        (2, 2),
    ]
    assert strongest_connections([[0.0, 0.0]], top_k=2) == []


def test_wiring_draws_one_arc_per_connection():
    snapshot = make_snapshot(softmax_matrix(6, seed=3))
    figure = wiring_figure(snapshot, top_k=2)
    assert len(figure.axes[0].patches) == 1 + 2 * 5  # block 0 has a single source
    figure = wiring_figure(snapshot, threshold=2.0)
    assert len(figure.axes[0].patches) == 0


def test_loss_figure_marks_steps_to_reach(tmp_path):
    base = metrics_lines(list(range(0, 101, 10)), rate=0.01)
    fast = metrics_lines(list(range(0, 101, 10)), rate=0.02)
    runs = [("cascaded", base), ("ancre", fast)]
    comparisons = compare_runs(runs)
    assert comparisons[0].steps == pytest.approx(50) and comparisons[0].baseline_steps == 100
    figure = loss_figure(runs, comparisons)
    assert "ancre needs 50.0% fewer steps than cascaded" in figure.axes[0].get_title()
    (png,) = save_figure(figure, tmp_path, "losses")
    assert imread(png)[..., :3].var() > 0.005
    empty = loss_figure([("r", [])])
    assert any("no loss records" in t.get_text() for t in empty.axes[0].texts)
