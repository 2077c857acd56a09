"""The wiring diagram: blocks as nodes on a line, the strongest connections as arcs.

Node i is the state h_i, named as in the heatmaps: h_0 is the embeddings and h_i the
input of block i (made by block i-1). Block j reads h_j and writes h_{j+1}; the weight
P[j, i] it puts on h_i is an arc from node i to node j+1, its width and colour showing
the weight. The arc from node j to node j+1 is the block's plain residual, P[j, j].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.patches import Arc

from ancre.snapshot import TopologySnapshot
from ancre.viz.canvas import colormap, is_all_zero, new_figure, shared_norm, snapshot_title
from ancre.viz.heatmap import COLORBAR_LABEL, describe_snapshot, note_all_zero

DEFAULT_TOP_K = 2


class Connection(NamedTuple):
    """One drawn connection: block ``block`` reads state ``source`` with ``weight``."""

    block: int
    source: int
    weight: float


def strongest_connections(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    top_k: int = DEFAULT_TOP_K,
    threshold: float | None = None,
) -> list[Connection]:
    """The connections to draw: per block, the ``top_k`` largest |P[j, i]|, or all >= threshold.

    Args:
        matrix: P, shape (L, L+1).
        top_k: How many sources per block (when no threshold is given).
        threshold: Draw every connection with |P[j, i]| >= threshold instead.

    Returns:
        Non-zero connections, weakest first (so the strongest are drawn on top).
    """
    p = np.asarray(matrix, dtype=np.float64)  # (L, L+1)
    chosen = []
    for j in range(p.shape[0]):
        row = p[j, : j + 1]
        order = np.argsort(-np.abs(row), kind="stable")
        if threshold is None:
            picks = order[: max(top_k, 0)]
        else:
            picks = [i for i in order if abs(row[i]) >= threshold]
        chosen += [Connection(j, int(i), float(row[i])) for i in picks if row[i] != 0.0]
    return sorted(chosen, key=lambda c: abs(c.weight))


def wiring_figure(
    snapshot: TopologySnapshot,
    run_name: str = "",
    top_k: int = DEFAULT_TOP_K,
    threshold: float | None = None,
) -> Figure:
    """Draws the wiring diagram of one snapshot.

    Args:
        snapshot: The snapshot to draw.
        run_name: Shown in the title.
        top_k: Arcs per block (when no threshold is given).
        threshold: Draw every connection with |P[j, i]| >= threshold instead.

    Returns:
        The figure.
    """
    num_layers = snapshot.num_layers
    connections = strongest_connections(snapshot.matrix, top_k, threshold)
    figure = new_figure(min(16.0, max(7.0, 5.0 + 0.22 * num_layers)), 4.8)
    ax = figure.add_subplot()
    norm = shared_norm([snapshot.matrix])
    cmap = colormap()
    largest = max((abs(c.weight) for c in connections), default=1.0)
    tallest = max((c.block + 1 - c.source for c in connections), default=1)
    for c in connections:
        span = c.block + 1 - c.source
        ax.add_patch(
            Arc(
                ((c.source + c.block + 1) / 2, 0.0),
                width=span,
                height=span,
                theta1=0.0,
                theta2=180.0,
                color=cmap(norm(c.weight)),
                linewidth=0.6 + 5.0 * abs(c.weight) / largest,
                zorder=2,
            )
        )
    ax.plot([0, num_layers], [0, 0], color="0.75", linewidth=1.0, zorder=1)
    ax.scatter(range(num_layers + 1), [0] * (num_layers + 1), s=30, color="0.2", zorder=3)
    label_step = max(1, num_layers // 12)
    for node in range(0, num_layers + 1, label_step):
        ax.text(node, -0.06 * tallest - 0.1, f"h{node}", ha="center", va="top", fontsize=9)
    ax.text(0, -0.2 * tallest - 0.25, "h0 = embeddings", ha="left", va="top", fontsize=9)
    ax.set_xlim(-0.7, num_layers + 0.7)
    ax.set_ylim(-0.3 * tallest - 0.4, 0.55 * tallest + 0.2)
    ax.set_axis_off()
    figure.colorbar(ScalarMappable(norm, cmap), ax=ax, label=COLORBAR_LABEL, shrink=0.8)
    rule = f"|P| >= {threshold:g}" if threshold is not None else f"top {top_k} per block"
    prefix = f"{run_name}: " if run_name else ""
    ax.set_title(
        f"{prefix}wiring ({describe_snapshot(snapshot)}), {rule}, "
        f"{snapshot_title(snapshot.step, snapshot.tokens)}\n"
        "an arc from h_i to h_(j+1): block j reads h_i with weight P[j, i]",
        fontsize=10,
    )
    if is_all_zero(snapshot.matrix):
        note_all_zero(ax)
    return figure
