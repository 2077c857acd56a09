"""The connection matrix as a heatmap, alone or as small multiples over training.

Rows are the reading blocks j (top to bottom), columns the states h_i they read:
h_0 is the embeddings and h_i the input of block i. The matrix is L x (L+1), but its
last column (h_L, the last block's output) is read by no block: the heatmap shows the
L columns h_0 .. h_{L-1}. Cells above the diagonal do not exist and are left blank.
Cell (row j, column i) is centred on the data point (x=i, y=j).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from ancre.snapshot import TopologySnapshot
from ancre.viz.canvas import (
    EMPTY_TEXT,
    colormap,
    is_all_zero,
    luminance,
    new_figure,
    plain,
    shared_norm,
    snapshot_title,
)

ANNOTATE_MAX_LAYERS = 10
"""Values are printed in the cells up to this L (larger ones would need tiny fonts)."""
COLORBAR_LABEL = "connection weight P[j, i]"
X_LABEL = "state h_i read (h_0 = embeddings, h_i = input of block i)"
Y_LABEL = "reading block j"


def masked_matrix(matrix: Sequence[Sequence[float]] | np.ndarray) -> np.ma.MaskedArray:
    """P's read columns as a masked array (L, L): h_0 .. h_{L-1}, cells i > j hidden."""
    p = np.asarray(matrix, dtype=np.float64)  # (L, L+1)
    p = p[:, : p.shape[0]]  # (L, L): the column of h_L is read by no block
    rows, cols = np.indices(p.shape)
    return np.ma.masked_where(cols > rows, p)


def _tick_step(count: int, most: int = 17) -> int:
    return max(1, math.ceil(count / most))


def draw_matrix(
    ax: Axes,
    matrix: Sequence[Sequence[float]] | np.ndarray,
    norm: Normalize,
    annotate: bool | None = None,
) -> AxesImage:
    """Draws one connection matrix on an axes.

    Args:
        ax: Where to draw.
        matrix: P, shape (L, L+1).
        norm: The colour scale (shared with the other panels of the figure).
        annotate: Print the values in the cells; None does so when L <= 16.

    Returns:
        The image, for a colorbar.
    """
    data = masked_matrix(matrix)
    num_layers = data.shape[0]
    cmap = colormap()
    image = ax.imshow(data, cmap=cmap, norm=norm, interpolation="nearest", aspect="equal")
    ax.set_xlim(-0.5, num_layers - 0.5)
    ax.set_ylim(num_layers - 0.5, -0.5)
    step = _tick_step(num_layers)
    ax.set_xticks(list(range(0, num_layers, step)))
    ax.set_yticks(list(range(0, num_layers, step)))
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    ax.tick_params(length=2, labelsize=9)
    if annotate is None:
        annotate = num_layers <= ANNOTATE_MAX_LAYERS
    if annotate:
        for j in range(num_layers):
            for i in range(j + 1):
                value = float(data[j, i])
                dark = luminance(cmap(norm(value))) < 0.5
                ax.text(
                    i,
                    j,
                    plain(value),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if dark else "black",
                )
    if is_all_zero(data.filled(0.0)):
        note_all_zero(ax)
    return image


def note_all_zero(ax: Axes) -> None:
    """Writes the all-zero (cascaded) note across an axes."""
    ax.text(
        0.5,
        0.5,
        EMPTY_TEXT.replace(": ", ":\n"),
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=9,
        wrap=True,
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.5", "alpha": 0.9},
    )


def describe_snapshot(snapshot: TopologySnapshot) -> str:
    """'softmax, tau=0.01' and the like: how the matrix is made (and when it froze)."""
    text = snapshot.parameterisation
    if snapshot.temperature is not None:
        text += f", τ={snapshot.temperature:g}"
    if snapshot.frozen_at is not None and snapshot.edges is not None:
        kept = sum(len(row) for row in snapshot.edges)
        text += f", frozen at step {snapshot.frozen_at}, {kept} edges kept"
    return text


def matrix_figure(
    snapshot: TopologySnapshot, run_name: str = "", norm: Normalize | None = None
) -> Figure:
    """A heatmap of one snapshot's matrix with a labelled colorbar.

    Args:
        snapshot: The snapshot to draw.
        run_name: Shown in the title.
        norm: The colour scale; None fits it to this matrix.

    Returns:
        The figure (axes ``figure.axes[0]`` is the matrix).
    """
    num_layers = snapshot.num_layers
    width = min(12.0, max(6.0, 2.5 + 0.45 * num_layers))
    figure = new_figure(width, width * 0.8)
    ax = figure.add_subplot()
    norm = norm or shared_norm([snapshot.matrix])
    image = draw_matrix(ax, snapshot.matrix, norm)
    figure.colorbar(image, ax=ax, label=COLORBAR_LABEL, shrink=0.85)
    prefix = f"{run_name}: " if run_name else ""
    ax.set_title(
        f"{prefix}connection matrix ({describe_snapshot(snapshot)})\n"
        f"{snapshot_title(snapshot.step, snapshot.tokens)}",
        fontsize=10,
    )
    return figure


def evolution_figure(snapshots: Sequence[TopologySnapshot], run_name: str = "") -> Figure:
    """Small multiples of the matrix at several steps, on one shared colour scale.

    Args:
        snapshots: The snapshots to show, in order (a handful).
        run_name: Shown in the title.

    Returns:
        The figure, one panel per snapshot and one colorbar.
    """
    count = len(snapshots)
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    num_layers = snapshots[0].num_layers
    panel = 3.6 if num_layers <= 24 else 4.4
    figure = new_figure(columns * panel + 1.2, rows * panel * 0.95 + 0.6)
    norm = shared_norm(s.matrix for s in snapshots)
    axes = [figure.add_subplot(rows, columns, k + 1) for k in range(count)]
    image = None
    for ax, snapshot in zip(axes, snapshots, strict=True):
        image = draw_matrix(ax, snapshot.matrix, norm, annotate=num_layers <= 6)
        ax.set_title(snapshot_title(snapshot.step, snapshot.tokens), fontsize=10)
        ax.set_xlabel("state h_i read")  # the full naming is in the single heatmap
    figure.colorbar(image, ax=axes, label=COLORBAR_LABEL, shrink=0.8)
    prefix = f"{run_name}: " if run_name else ""
    figure.suptitle(f"{prefix}connection matrix over training", fontsize=11)
    return figure
