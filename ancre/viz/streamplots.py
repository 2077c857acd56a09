"""The residual stream's per-block statistics (metrics.jsonl) against depth and over training.

``train.block_stats_every`` writes, for the first validation sequences,
the RMS of every state, each block's update ratio, each term's share of the final
state and what bf16 would round away (``ancre.model.depth_stats``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from ancre.viz.canvas import colormap, new_figure
from ancre.viz.statplots import cell_edges

KEYS = ("state_rms", "update_ratio", "final_share", "bf16_rounding")
LABELS = {
    "state_rms": "RMS of h_j (h_L last)",
    "update_ratio": "update ratio ||y_j - h_j|| / ||h_j||",
    "final_share": "share of the final state",
    "bf16_rounding": "bf16 rounding / ||update||",
}
LOG_SCALED = ("state_rms", "update_ratio", "bf16_rounding")


@dataclass(frozen=True)
class StreamStats:
    """The per-block statistics of one step.

    Attributes:
        step: The step they were taken at.
        values: Each of :data:`KEYS` -> its numbers (L+1 or L).
    """

    step: int
    values: dict[str, list[float]]


def stream_stats(records: Sequence[dict]) -> list[StreamStats]:
    """The ``block_stats`` records of a metrics file, one per step (the last one wins).

    Records of another shape (an older or edited file) are left out.
    """
    by_step: dict[int, StreamStats] = {}
    for record in records:
        stats, step = record.get("block_stats"), record.get("step")
        if not isinstance(stats, dict) or not isinstance(step, int):
            continue
        values = {k: stats[k] for k in KEYS if _numbers(stats.get(k))}
        if "state_rms" in values:
            by_step[step] = StreamStats(step, values)
    return [by_step[s] for s in sorted(by_step)]


def _numbers(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) for v in value)


def _x_positions(key: str, count: int) -> tuple[np.ndarray, str]:
    """The x values of one statistic's numbers, and the axis label."""
    if key == "state_rms":
        return np.arange(count), "state h_j (j = L: the final state)"
    if key == "final_share":
        return np.arange(count) - 1, "term (-1: the embeddings, j: block j's update)"
    return np.arange(count), "block j"


def stream_depth_figure(stats: Sequence[StreamStats], run_name: str = "") -> Figure:
    """Every statistic against depth, at up to four steps (first, last and between).

    Args:
        stats: The run's statistics in step order (at least one).
        run_name: Shown in the title.
    """
    figure = new_figure(15.0, 4.2)
    axes = figure.subplots(1, len(KEYS))
    picks = sorted({0, len(stats) // 3, 2 * len(stats) // 3, len(stats) - 1})
    shown = [stats[i] for i in picks]
    for ax, key in zip(axes, KEYS, strict=True):
        for n, item in enumerate(shown):
            values = item.values.get(key)
            if values is None:
                continue
            x, label = _x_positions(key, len(values))
            shade = str(0.75 - 0.75 * n / max(len(shown) - 1, 1))
            ax.plot(x, values, marker="o", markersize=3, color=shade, label=f"step {item.step}")
            ax.set_xlabel(label)
        if key in LOG_SCALED and _positive(shown, key):
            ax.set_yscale("log")
        if key == "final_share":
            ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.set_title(LABELS[key], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=9)
    prefix = f"{run_name}: " if run_name else ""
    figure.suptitle(f"{prefix}the residual stream against depth (probe batch)", fontsize=11)
    return figure


def _positive(stats: Sequence[StreamStats], key: str) -> bool:
    values = [v for s in stats for v in s.values.get(key, [])]
    return bool(values) and all(v > 0 and math.isfinite(v) for v in values)


def stream_training_figure(stats: Sequence[StreamStats], run_name: str = "") -> Figure:
    """log10 of the state RMS and update ratio, and the final shares, over training.

    Args:
        stats: The run's statistics in step order (at least one).
        run_name: Shown in the title.
    """
    figure = new_figure(14.0, 4.6)
    keys = ("state_rms", "update_ratio", "final_share")
    axes = figure.subplots(1, len(keys))
    steps = np.array([s.step for s in stats], dtype=np.float64)
    for ax, key in zip(axes, keys, strict=True):
        rows = [s.values.get(key) for s in stats]
        width = max(len(r) for r in rows if r is not None)
        data = np.full((width, len(stats)), np.nan)  # (terms, steps)
        for t, row in enumerate(rows):
            if row is not None and len(row) == width:
                data[:, t] = row
        label = LABELS[key]
        if key in LOG_SCALED:
            with np.errstate(divide="ignore", invalid="ignore"):
                data = np.log10(data)
            label = f"log10 {label}"
        offset = -1 if key == "final_share" else 0
        mesh = ax.pcolormesh(
            cell_edges(steps), cell_edges(np.arange(width) + offset), np.ma.masked_invalid(data),
            cmap=colormap(),
        )  # fmt: skip
        ax.set_ylim(width - 0.5 + offset, offset - 0.5)
        ax.set_xlabel("step")
        ax.set_ylabel(_x_positions(key, width)[1])
        ax.set_title(label, fontsize=10)
        figure.colorbar(mesh, ax=ax, shrink=0.85)
    prefix = f"{run_name}: " if run_name else ""
    figure.suptitle(f"{prefix}the residual stream over training (probe batch)", fontsize=11)
    return figure
