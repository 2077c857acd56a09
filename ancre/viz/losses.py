"""Loss curves of one run, or of several runs with where each reaches the baseline's loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ancre.viz.canvas import new_figure
from ancre.viz.compare import TRAINING, Comparison
from ancre.viz.curves import series


def loss_figure(
    runs: Sequence[tuple[str, Sequence[Mapping]]],
    comparisons: Sequence[Comparison] = (),
) -> Figure:
    """Training loss (thin) and validation loss (markers) of each run against steps.

    Args:
        runs: (name, metrics records) of each run, the first drawn first.
        comparisons: Steps-to-reach results: the baseline's final loss is drawn as a
            dotted line, and each run's crossing of it as a star on the curve the
            comparison read (the smoothed training loss is drawn when that is it).

    Returns:
        The figure.
    """
    figure = new_figure(9.0, 5.5)
    ax = figure.add_subplot()
    colours = {name: f"C{k % 10}" for k, (name, _) in enumerate(runs)}
    drawn = False
    smoothed = bool(comparisons) and comparisons[0].curve == TRAINING
    for name, records in runs:
        steps, losses = series(records, "loss")
        if steps:
            ax.plot(steps, losses, color=colours[name], alpha=0.35, linewidth=1.0,
                    label=f"{name} training loss")  # fmt: skip
            drawn = True
        if smoothed:
            steps, losses = TRAINING.points(records)
            ax.plot(steps, losses, color=colours[name], linewidth=2.0,
                    label=f"{name} training loss, smoothed")  # fmt: skip
        steps, losses = series(records, "val_loss")
        if steps:
            ax.plot(steps, losses, "o-", color=colours[name], markersize=4, linewidth=1.6,
                    label=f"{name} val_loss")  # fmt: skip
            drawn = True
    if comparisons:
        _mark_crossings(ax, comparisons, colours)
        ax.set_title("\n".join(c.describe() for c in comparisons), fontsize=9, wrap=True)
    else:
        ax.set_title("loss", fontsize=10)
    if not drawn:
        ax.text(0.5, 0.5, "no loss records yet (metrics.jsonl missing or empty)",
                transform=ax.transAxes, ha="center", va="center")  # fmt: skip
    else:
        ax.legend(fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    return figure


def _mark_crossings(
    ax: Axes, comparisons: Sequence[Comparison], colours: Mapping[str, str]
) -> None:
    """The target as a dotted line, each crossing as a star where the curve meets it."""
    first = comparisons[0]
    what = "smoothed training loss" if first.curve.smoothed else first.curve.key
    ax.axhline(first.target, linestyle=":", color="0.3",
               label=f"{first.baseline} final {what} {first.target:.4f}")  # fmt: skip
    reached = [(first.baseline, first.baseline_reached.step)]
    reached += [(c.run, c.reached.step) for c in comparisons if c.reached is not None]
    for name, step in reached:
        colour = colours.get(name, "0.3")
        ax.axvline(step, color=colour, linestyle="--", alpha=0.5)
        ax.plot([step], [first.target], marker="*", markersize=14, color=colour,
                markeredgecolor="black", zorder=5)  # fmt: skip
