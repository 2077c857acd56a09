"""Loss curves of one run, or of several runs overlaid with steps-to-reach markers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from ancre.viz.canvas import new_figure
from ancre.viz.curves import Comparison, series


def loss_figure(
    runs: Sequence[tuple[str, Sequence[Mapping]]],
    comparisons: Sequence[Comparison] = (),
) -> Figure:
    """Training loss (thin) and validation loss (markers) of each run against steps.

    Args:
        runs: (name, metrics records) of each run, the first drawn first.
        comparisons: Steps-to-reach results: the baseline's final val_loss is drawn as a
            dotted line and each run's first step at or below it as a marker.

    Returns:
        The figure.
    """
    figure = new_figure(9.0, 5.0)
    ax = figure.add_subplot()
    colours = {name: f"C{k % 10}" for k, (name, _) in enumerate(runs)}
    drawn = False
    for name, records in runs:
        steps, losses = series(records, "loss")
        if steps:
            ax.plot(
                steps,
                losses,
                color=colours[name],
                alpha=0.45,
                linewidth=1.0,
                label=f"{name} train loss",
            )
            drawn = True
        steps, losses = series(records, "val_loss")
        if steps:
            ax.plot(
                steps,
                losses,
                "o-",
                color=colours[name],
                markersize=4,
                linewidth=1.6,
                label=f"{name} val_loss",
            )
            drawn = True
    if comparisons:
        target = comparisons[0].target
        ax.axhline(
            target,
            linestyle=":",
            color="0.3",
            label=f"{comparisons[0].baseline} final val_loss {target:.4f}",
        )
        reached = [(comparisons[0].baseline, comparisons[0].baseline_steps)]
        reached += [(c.run, c.steps) for c in comparisons if c.steps is not None]
        for name, step in reached:
            ax.axvline(step, color=colours.get(name, "0.3"), linestyle="--", alpha=0.6)
            ax.plot(
                [step],
                [target],
                marker="*",
                markersize=13,
                color=colours.get(name, "0.3"),
                markeredgecolor="black",
                zorder=5,
            )
        ax.set_title("\n".join(c.describe() for c in comparisons), fontsize=8)
    else:
        ax.set_title("loss", fontsize=10)
    if not drawn:
        ax.text(
            0.5,
            0.5,
            "no loss records yet (metrics.jsonl missing or empty)",
            transform=ax.transAxes,
            ha="center",
            va="center",
        )
    else:
        ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    return figure
