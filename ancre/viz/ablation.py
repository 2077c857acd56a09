"""Which connections matter, beside how heavy they are: ``ancre ablate``'s result in the report.

``ancre ablate`` writes its result beside the checkpoint it ablated
(``checkpoints/step_N.ablation.json``, ``ancre.run_folder.ablation_file``). The report
shows the newest one: each connection's weight and the loss increase when it alone is
removed, side by side on the matrix's grid, their scatter with the rank correlation,
and what pruning every row to its top k costs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from ancre.run_folder import RunFolder
from ancre.viz.canvas import colormap, new_figure
from ancre.viz.html import Section

ABLATION_FILE = re.compile(r"^step_(\d{8})\.ablation(-renormalised)?\.json$")


def newest_ablation(run_path: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest ablation result of a run folder, or None when ``ancre ablate`` never ran.

    Of one step's two results, the plain one is shown before the renormalised one.
    """
    folder = RunFolder(run_path).checkpoints_dir
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        if (match := ABLATION_FILE.match(path.name)) is not None:
            found.append((int(match.group(1)), match.group(2) is None, path))
    if not found:
        return None
    _, _, path = max(found)
    return path, json.loads(path.read_text())


def _grid(result: dict[str, Any], key: str) -> np.ma.MaskedArray:
    """(L, L+1) of one field of the connections, masked where there is no connection."""
    connections = result["connections"]
    rows = 1 + max(c["row"] for c in connections)
    grid = np.full((rows, rows + 1), np.nan)
    for c in connections:
        grid[c["row"], c["column"]] = abs(c[key]) if key == "mass" else c[key]
    return np.ma.masked_invalid(grid)


def ablation_figure(result: dict[str, Any], run_name: str) -> Figure:
    """Weight, loss increase and their scatter, for one ablation result."""
    figure = new_figure(15.0, 4.8)
    axes = figure.subplots(1, 3)
    mass, delta = _grid(result, "mass"), _grid(result, "delta")
    image = axes[0].imshow(mass, cmap=colormap(), norm=Normalize(0.0, float(mass.max())))
    figure.colorbar(image, ax=axes[0], label="|weight|")
    axes[0].set_title(f"{run_name}: weight of each connection")
    bound = max(float(np.abs(delta).max()), 1e-9)
    image = axes[1].imshow(delta, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound))
    figure.colorbar(image, ax=axes[1], label="val_loss change when removed")
    axes[1].set_title("loss change when it alone is removed")
    for ax in axes[:2]:
        ax.set_xlabel(f"column ({result.get('columns', 'source state')})", fontsize=8)
        ax.set_ylabel("row j (block j's mix)")
    points = [(abs(c["mass"]), c["delta"]) for c in result["connections"]]
    axes[2].scatter([p[0] for p in points], [p[1] for p in points], s=14)
    axes[2].axhline(0.0, color="0.6", linewidth=0.8)
    axes[2].set_xlabel("|weight|")
    axes[2].set_ylabel("val_loss change when removed")
    axes[2].set_title(f"Spearman {result['spearman_mass_delta']:.3f}")
    return figure


def ablation_sections(
    run_path: Path, run_name: str, save: Callable[[Figure, str], Path]
) -> list[Section]:
    """The report's ablation section, when the run has an ablation result."""
    found = newest_ablation(run_path)
    if found is None:
        return []
    path, result = found
    how = "rest of the row rescaled" if result["renormalised"] else "rest of the row as it was"
    pruned = ", ".join(f"top {p['k']}: {p['delta']:+.4f}" for p in result["top_k"])
    caption = (
        f"{path.name}: ancre ablate at step {result['step']}, val_loss {result['val_loss']:.4f} "
        f"on {result['val_tokens']} tokens; each connection removed on its own ({how}). "
        f"Spearman rank correlation of |weight| and loss change over "
        f"{len(result['connections'])} connections: {result['spearman_mass_delta']:.3f}. "
        f"Every row pruned to its k heaviest connections at once: {pruned}."
    )
    return [
        Section(
            "Which connections matter (ancre ablate)",
            save(ablation_figure(result, run_name), "ablation"),
            caption,
        )
    ]
