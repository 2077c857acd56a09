"""Per-block statistics plotted against depth (one step) and over training (heat strips)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ancre.snapshot import TopologySnapshot
from ancre.viz.canvas import colormap, is_all_zero, new_figure, snapshot_title
from ancre.viz.statistics import LABELS, block_statistics

PLOTTED = ("predecessor_weight", "entropy", "mean_source_distance")


def depth_figure(
    snapshot: TopologySnapshot,
    reference: TopologySnapshot | None = None,
    run_name: str = "",
) -> Figure:
    """The statistics of every block against its depth, at one step.

    Args:
        snapshot: The step to show (solid line).
        reference: An earlier snapshot drawn dashed for comparison (e.g. step 0), or None.
        run_name: Shown in the title.

    Returns:
        The figure, one panel per statistic.
    """
    figure = new_figure(13.0, 4.2)
    axes = figure.subplots(1, len(PLOTTED))
    blocks = np.arange(snapshot.num_layers)
    shown = [(snapshot, "-", "C0")]
    if reference is not None and reference.step != snapshot.step:
        shown.insert(0, (reference, "--", "0.6"))
    for ax, name in zip(axes, PLOTTED, strict=True):
        for item, style, colour in shown:
            values = block_statistics(item.matrix).get(name)
            ax.plot(
                blocks,
                values,
                style,
                marker="o",
                markersize=3,
                color=colour,
                label=f"step {item.step}",
            )
        if name == "entropy":
            ax.plot(blocks, np.log(blocks + 1.0), ":", color="C3", label="uniform row log(j+1)")
        ax.set_xlabel("block j")
        ax.set_ylabel(LABELS[name])
        ax.set_title(LABELS[name], fontsize=10)
        ax.grid(alpha=0.3)
        if np.all(np.isnan(block_statistics(snapshot.matrix).get(name))):
            ax.text(
                0.5,
                0.5,
                "undefined for an all-zero matrix",
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=9,
            )
    axes[1].legend(fontsize=9)
    prefix = f"{run_name}: " if run_name else ""
    figure.suptitle(
        f"{prefix}per-block statistics, {snapshot_title(snapshot.step, snapshot.tokens)}",
        fontsize=11,
    )
    return figure


def cell_edges(values: Sequence[float]) -> np.ndarray:
    """Cell edges around sorted centres (midpoints; +-0.5 for a single centre)."""
    centres = np.asarray(values, dtype=np.float64)
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate(
        [
            [centres[0] - (middle[0] - centres[0])],
            middle,
            [centres[-1] + (centres[-1] - middle[-1])],
        ]
    )


def training_figure(snapshots: Sequence[TopologySnapshot], run_name: str = "") -> Figure:
    """The statistics of every block over training, as heat strips (step x block).

    Args:
        snapshots: The run's snapshots in step order.
        run_name: Shown in the title.

    Returns:
        The figure, one panel per statistic with its colorbar.
    """
    figure = new_figure(14.0, 4.6)
    axes = figure.subplots(1, len(PLOTTED))
    steps = [s.step for s in snapshots]
    num_layers = snapshots[0].num_layers
    stats = [block_statistics(s.matrix) for s in snapshots]
    cmap = colormap()
    for ax, name in zip(axes, PLOTTED, strict=True):
        data = np.array([st.get(name) for st in stats]).T  # (L, snapshots)
        mesh = ax.pcolormesh(
            cell_edges(steps), cell_edges(range(num_layers)), np.ma.masked_invalid(data), cmap=cmap
        )
        ax.set_ylim(num_layers - 0.5, -0.5)
        ax.set_xlabel("step")
        ax.set_ylabel("block j")
        ax.set_title(LABELS[name], fontsize=10)
        figure.colorbar(mesh, ax=ax, shrink=0.85, label=LABELS[name])
    if all(is_all_zero(s.matrix) for s in snapshots):
        axes[1].text(
            0.5,
            0.5,
            "all-zero matrix (cascaded):\nentropy undefined",
            transform=axes[1].transAxes,
            ha="center",
            va="center",
            fontsize=9,
            bbox={"facecolor": "white", "edgecolor": "0.5"},
        )
    prefix = f"{run_name}: " if run_name else ""
    figure.suptitle(f"{prefix}per-block statistics over training", fontsize=11)
    return figure
