"""Weights & Biases as a sink: one W&B run per run folder, resumed with it.

- **Scalars** of every record at its step; nested counts (``data_skipped``) as
  ``data_skipped/<reason>``.
- **The connection matrix** at ``checkpoint.topology_every``: a heatmap image
  (``topology/matrix``) and a table of its entries (``topology/entries``: row, column,
  weight), for every kind (the effective L x (L+1) matrix of its snapshot).
- **The per-block statistics** at ``train.block_stats_every``: one line plot per
  statistic against depth (``block_stats/<name>``) and the last block's value as a
  scalar over training.
- **The run's W&B id** lives in ``wandb/run.json`` in the run folder. A resumed run,
  on any number of processes, continues the same W&B run (``resume="allow"``); the
  steps it logs again after a kill carry the values W&B already has (the resume is
  exact), and W&B keeps the first of each. A rewound run (resumed from a checkpoint
  older than complete ones, which go to ``superseded/``) is a new timeline: it goes
  to a new W&B run in the same group, and ``run.json`` lists the earlier ids.
- **The config**, flattened to dotted keys, so W&B filters on any of them; the W&B
  group is ``logging.wandb_group`` (a sweep sets its name) or the run's name, the job
  type ``logging.wandb_job_type`` (a sweep sets the run's axes).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ancre.atomic import write_text_atomic
from ancre.config import AncreConfig, flat_config
from ancre.snapshot import TopologySnapshot

logger = logging.getLogger("ancre")

RUN_FILE = "run.json"
"""In the run folder's ``wandb/``: the W&B run id and the earlier ones of the folder."""


def read_identity(files_dir: Path) -> dict[str, Any] | None:
    """The run folder's W&B identity (``{"id", "earlier"}``), or None when it has none."""
    path = files_dir / RUN_FILE
    try:
        identity = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return identity if isinstance(identity, dict) and isinstance(identity.get("id"), str) else None


def check_credentials(mode: str) -> str | None:
    """Why ``logging.wandb: online`` cannot log from here (None: it can, or not online)."""
    if mode != "online" or os.environ.get("WANDB_API_KEY"):
        return None
    if _netrc_has_wandb():
        return None
    return (
        "is online, but no W&B credentials are here (no WANDB_API_KEY, no api.wandb.ai "
        "entry in ~/.netrc): run `wandb login` or set WANDB_API_KEY, or use logging.wandb="
        "offline and `wandb sync` the run folder's wandb/ later"
    )


def _netrc_has_wandb() -> bool:
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbSink:
    """Logs records, topology snapshots and block statistics to the run's W&B run.

    Args:
        config: The resolved run config (logged flattened; its ``logging`` section).
        files_dir: The run folder's ``wandb/`` (wandb writes ``<its parent>/wandb``).
        new_timeline: The run continues from a checkpoint older than complete ones (a
            rewind): it gets a new W&B run.
    """

    def __init__(self, config: AncreConfig, files_dir: Path, new_timeline: bool) -> None:
        import wandb  # here, not at import: a run that logs no W&B never pays its import
        from wandb.sdk.lib.runid import generate_id

        settings = config.logging
        if settings.wandb == "offline":
            os.environ["WANDB_MODE"] = "offline"  # also stops the online telemetry thread
        os.environ.setdefault("WANDB_CACHE_DIR", str(files_dir / "cache"))
        files_dir.mkdir(parents=True, exist_ok=True)
        identity = read_identity(files_dir)
        if identity is not None and new_timeline:
            earlier = [*identity.get("earlier", []), identity["id"]]
            identity = {"id": generate_id(), "earlier": earlier}
            logger.warning(
                "W&B: this run continues from an older checkpoint; W&B run %s keeps the "
                "points of the timeline set aside, and this one goes to W&B run %s (same "
                "group)", earlier[-1], identity["id"],
            )  # fmt: skip
        elif identity is None:
            identity = {"id": generate_id(), "earlier": []}
        write_text_atomic(files_dir / RUN_FILE, json.dumps(identity) + "\n")
        self.run_id: str = identity["id"]
        self._run = wandb.init(
            mode=settings.wandb, project=settings.wandb_project, name=config.run.name,
            dir=str(files_dir.parent), config=flat_config(config), id=self.run_id,
            resume="allow", group=settings.wandb_group or config.run.name,
            job_type=settings.wandb_job_type,
        )  # fmt: skip

    def log(self, record: dict[str, Any]) -> None:
        """Logs a record's numbers (and its block statistics as plots) at its step."""
        values: dict[str, Any] = {}
        for key, value in record.items():
            if key == "step":
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[key] = value
            elif key == "block_stats" and isinstance(value, dict):
                values.update(_block_plots(value))
            elif isinstance(value, dict):
                values.update(
                    {f"{key}/{k}": v for k, v in value.items() if isinstance(v, int | float)}
                )
        if values:
            self._run.log(values, step=record["step"])

    def log_topology(self, snapshot: TopologySnapshot) -> None:
        """Logs the connection matrix as a heatmap image and a table of its entries."""
        import wandb

        rows = snapshot.matrix  # L rows of L + 1 weights
        table = wandb.Table(columns=["row", "column", "weight"])
        for j, row in enumerate(rows):
            for i, weight in enumerate(row):
                table.add_data(j, i, float(weight))
        image = wandb.Image(_heatmap(rows, snapshot.step), caption=f"step {snapshot.step}")
        self._run.log({"topology/matrix": image, "topology/entries": table}, step=snapshot.step)

    def close(self) -> None:
        """Finishes the W&B run."""
        self._run.finish()


def _block_plots(stats: dict[str, Any]) -> dict[str, Any]:
    """Each per-block statistic as a line plot against depth, and its last value."""
    import wandb

    plots: dict[str, Any] = {}
    for name, values in stats.items():
        if not isinstance(values, list) or not values:
            continue
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if len(numbers) != len(values):
            continue
        table = wandb.Table(data=[[i, v] for i, v in enumerate(numbers)], columns=["block", name])
        plots[f"block_stats/{name}"] = wandb.plot.line(table, "block", name, title=name)
        plots[f"block_stats/{name}_last"] = numbers[-1]
    return plots


def _heatmap(rows: list[list[float]], step: int) -> np.ndarray:
    """The matrix drawn as an RGB image (H, W, 3) uint8 (rows: h_{j+1}; columns: h_i)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    figure = Figure(figsize=(4 + 0.1 * len(rows), 3 + 0.1 * len(rows)))
    axes = figure.subplots()
    shown = axes.imshow(rows, cmap="viridis", aspect="auto")
    axes.set_xlabel("source state h_i")
    axes.set_ylabel("block j (writes h_{j+1})")
    axes.set_title(f"connection matrix, step {step}")
    figure.colorbar(shown, ax=axes)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
