"""Reading a run folder: its topology snapshots and its metrics records."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ancre.run_folder import RunFolder, read_metrics
from ancre.snapshot import SnapshotError, TopologySnapshot, read_snapshot

SNAPSHOT_GLOB = "step_*.json"
logger = logging.getLogger(__name__)


class VizError(ValueError):
    """A run folder or file cannot be visualised; the message names it and says why."""


@dataclass(frozen=True)
class RunData:
    """What the visualiser knows of one run.

    Attributes:
        name: The run's name (its folder name, or the snapshot file's stem).
        path: The run folder or snapshot file that was read.
        snapshots: Topology snapshots in step order (may be empty for compared runs).
        records: metrics.jsonl records in file order (empty when there is no file).
        config: The run's config.yaml as dotted keys (None: no readable config).
    """

    name: str
    path: Path
    snapshots: list[TopologySnapshot] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    config: dict[str, object] | None = None

    @property
    def num_layers(self) -> int:
        """L, the number of blocks (rows of the matrix); 0 without snapshots."""
        return self.snapshots[0].num_layers if self.snapshots else 0


def read_snapshots(folder: str | Path) -> list[TopologySnapshot]:
    """Reads every ``step_*.json`` snapshot of a folder, in step order.

    Raises:
        VizError: The folder holds no snapshot, or snapshots disagree on L.
        SnapshotError: A snapshot is malformed (the message names the file).
    """
    folder = Path(folder)
    files = sorted(folder.glob(SNAPSHOT_GLOB))
    if not files:
        raise VizError(
            f"{folder}: no topology snapshots (step_*.json); "
            "a run writes them every checkpoint.topology_every steps"
        )
    snapshots = sorted((read_snapshot(f) for f in files), key=lambda s: s.step)
    sizes = {s.num_layers for s in snapshots}
    if len(sizes) > 1:
        raise VizError(f"{folder}: snapshots disagree on num_layers ({sorted(sizes)})")
    return snapshots


def load_run(path: str | Path, need_snapshots: bool = True) -> RunData:
    """Reads a run folder, or a single snapshot file.

    Args:
        path: A run folder (``topology/`` and ``metrics.jsonl``) or a snapshot file.
        need_snapshots: Whether a run without snapshots is an error; compared runs only
            need their metrics.

    Returns:
        The run's snapshots and records.

    Raises:
        VizError: The path is missing or holds nothing to show.
        SnapshotError: A snapshot file is malformed.
    """
    path = Path(path)
    if path.is_file():
        return RunData(name=path.stem, path=path, snapshots=[read_snapshot(path)])
    if not path.is_dir():
        raise VizError(f"{path}: no such run folder or snapshot file")
    folder = RunFolder(path)
    metrics = read_metrics(folder.metrics_file)
    if metrics.bad_lines:
        logger.warning(
            "%s: skipped %d torn line(s) (line %s)", folder.metrics_file, len(metrics.bad_lines),
            ", ".join(map(str, metrics.bad_lines[:5])),
        )  # fmt: skip
    records = metrics.records
    snapshots: list[TopologySnapshot] = []
    if need_snapshots or folder.snapshots():
        snapshots = read_snapshots(folder.topology_dir)
    if not need_snapshots and not records:
        raise VizError(f"{folder.metrics_file}: no metrics to compare (missing or empty)")
    return RunData(
        name=path.resolve().name, path=path, snapshots=snapshots, records=records,
        config=read_run_config(folder),
    )  # fmt: skip


def read_run_config(folder: RunFolder) -> dict[str, object] | None:
    """A run's config.yaml as dotted keys (``{"train.steps": 200, ...}``), or None."""
    try:
        tree = yaml.safe_load(folder.config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(tree, dict):
        return None
    flat: dict[str, object] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(tree, "")
    return flat


def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders from paths that are run folders or folders of runs (a sweep's).

    Raises:
        VizError: A path is neither (it names the path).
    """
    runs: list[Path] = []
    for path in map(Path, paths):
        folder = RunFolder(path)
        if folder.metrics_file.is_file() or folder.config_file.is_file() or path.is_file():
            runs.append(path)
            continue
        inner = (
            sorted(p for p in path.iterdir() if RunFolder(p).metrics_file.is_file())
            if path.is_dir()
            else []
        )
        if not inner:
            raise VizError(f"{path}: neither a run folder nor a folder of run folders")
        runs.extend(inner)
    return runs


def select_snapshot(snapshots: Sequence[TopologySnapshot], step: int | None) -> TopologySnapshot:
    """The snapshot taken at ``step``, or the latest when ``step`` is None.

    Raises:
        VizError: No snapshot has that step (the message lists the steps there are).
    """
    if step is None:
        return snapshots[-1]
    for snapshot in snapshots:
        if snapshot.step == step:
            return snapshot
    steps = ", ".join(str(s.step) for s in snapshots)
    raise VizError(f"no topology snapshot at step {step}; snapshots exist at steps {steps}")


def evenly_spaced(items: Sequence, count: int) -> list:
    """Up to ``count`` items spread evenly over a sequence, first and last included."""
    if count <= 0 or not items:
        return []
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[-1]]
    picks = sorted({round(k * (len(items) - 1) / (count - 1)) for k in range(count)})
    return [items[k] for k in picks]


def is_finite_number(value: object) -> bool:
    """Whether a metrics value is a real, finite number (not None, NaN or a string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = [
    "RunData",
    "SnapshotError",
    "VizError",
    "evenly_spaced",
    "expand_runs",
    "is_finite_number",
    "load_run",
    "read_snapshots",
    "select_snapshot",
]
