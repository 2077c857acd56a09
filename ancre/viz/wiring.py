"""The wiring diagram: blocks as nodes on a line, the strongest connections as arcs.

Node 0 is the embeddings (h_0), node j+1 is block j (whose output is h_{j+1}). The
weight P[j, i] that block j puts on h_i is an arc from node i (where h_i is made) to
node j+1; its width and colour show the weight. The arc from node j to node j+1 is
the block's plain residual, P[j, j].
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
    label_step = max(1, num_layers // 16)
    for node in range(0, num_layers + 1, label_step):
        name = "emb" if node == 0 else f"B{node - 1}"
        ax.text(node, -0.06 * tallest - 0.1, name, ha="center", va="top", fontsize=7)
    ax.set_xlim(-0.7, num_layers + 0.7)
    ax.set_ylim(-0.2 * tallest - 0.3, 0.55 * tallest + 0.2)
    ax.set_axis_off()
    figure.colorbar(ScalarMappable(norm, cmap), ax=ax, label=COLORBAR_LABEL, shrink=0.8)
    rule = f"|P| >= {threshold:g}" if threshold is not None else f"top {top_k} per block"
    prefix = f"{run_name}: " if run_name else ""
    ax.set_title(
        f"{prefix}wiring ({describe_snapshot(snapshot)}), {rule}, "
        f"{snapshot_title(snapshot.step, snapshot.tokens)}\n"
        "arc from node i to block j: block j reads h_i with weight P[j, i]",
        fontsize=9,
    )
    if is_all_zero(snapshot.matrix):
        note_all_zero(ax)
    return figure
