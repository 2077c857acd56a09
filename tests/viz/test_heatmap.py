"""The heatmap's cells are coloured by their values, read back from the saved PNG."""

from dataclasses import replace

import numpy as np
import pytest
from matplotlib.image import imread

from ancre.viz.canvas import luminance
from ancre.viz.heatmap import evolution_figure, matrix_figure
from tests.helpers.viz_builders import make_snapshot, softmax_matrix


def cell_colour(image, ax, row, col, dx=0.0, dy=0.0):
    """Median RGB of a 3x3 patch around data point (col + dx, row + dy) of the PNG."""
    x, y = ax.transData.transform((col + dx, row + dy))
    px, py = int(round(x)), int(round(image.shape[0] - y))
    patch = image[py - 1 : py + 2, px - 1 : px + 2, :3]
    return np.median(patch.reshape(-1, 3), axis=0)


def render(figure, path):
    figure.savefig(path, dpi=figure.dpi)
    image = imread(path)
    width, height = figure.get_size_inches() * figure.dpi
    assert image.shape[:2] == (round(height), round(width))
    assert image[..., :3].var() > 0.01, "the image is blank"
    return image


@pytest.mark.parametrize(("num_layers", "offset"), [(8, 0.32), (24, 0.0)])
def test_cell_colours_follow_the_values(tmp_path, num_layers, offset):
    matrix = np.array(softmax_matrix(num_layers, seed=num_layers))
    figure = matrix_figure(make_snapshot(matrix.tolist()), "r")
    image = render(figure, tmp_path / "m.png")
    ax = figure.axes[0]
    values, lights = [], []
    for j in range(num_layers):
        for i in range(j + 1):
            # off the centre when values are printed in the cells
            lights.append(luminance(cell_colour(image, ax, j, i, offset, offset)))
            values.append(matrix[j, i])
        # the cell just above the diagonal is blank
        assert np.allclose(cell_colour(image, ax, j, j + 1, offset, offset), 1.0)
    values, lights = np.array(values), np.array(lights)
    order = np.argsort(values)
    # viridis: a larger value is always drawn brighter (up to 8-bit rounding)
    gaps = np.diff(values[order])
    steps = np.diff(lights[order])
    assert np.all(steps[gaps > 0.02] > 0), "a larger value is not drawn brighter"
    assert np.all(steps > -0.01)
    assert np.corrcoef(np.argsort(order), np.argsort(np.argsort(lights)))[0, 1] > 0.98


def test_small_multiples_share_one_colour_scale(tmp_path):
    snapshots = [make_snapshot(softmax_matrix(4, seed=s), step=10 * s) for s in range(6)]
    figure = evolution_figure(snapshots, "r")
    render(figure, tmp_path / "e.png")
    panels = [ax for ax in figure.axes if ax.images]
    assert len(panels) == 6
    limits = {(ax.images[0].norm.vmin, ax.images[0].norm.vmax) for ax in panels}
    assert len(limits) == 1
    assert [ax.get_title() for ax in panels][-1].startswith("step 50 ·")
    colorbars = [ax for ax in figure.axes if ax.get_ylabel() == "connection weight P[j, i]"]
    assert len(colorbars) == 1


def test_values_are_printed_only_for_small_models():
    small = matrix_figure(make_snapshot(softmax_matrix(10)))
    large = matrix_figure(make_snapshot(softmax_matrix(11)))
    assert len(small.axes[0].texts) == 10 * 11 // 2
    assert len(large.axes[0].texts) == 0


def test_cascaded_matrix_says_so(tmp_path):
    zero = [[0.0] * 5 for _ in range(4)]
    figure = matrix_figure(make_snapshot(zero, kind="cascaded"))
    render(figure, tmp_path / "c.png")
    assert any("all-zero matrix (cascaded)" in t.get_text() for t in figure.axes[0].texts)


def test_frozen_matrix_title_says_when_it_froze(tmp_path):
    pruned = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.6, 0.0, 0.4, 0.0]]
    snapshot = replace(make_snapshot(pruned), frozen_at=40, edges=[[0], [1], [0, 2]])
    snapshot.check()
    figure = matrix_figure(snapshot)
    render(figure, tmp_path / "f.png")
    assert "frozen at step 40, 4 edges kept" in figure.axes[0].get_title()
