"""A sweep's state: which runs are finished, and the summary table of all of them.

A run counts as finished by its settings as well as its step: a run folder whose saved
config differs from the sweep's run in a key that changes training (any key but those
a resume may change freely, ``ancre.run_folder.plan``) holds another run, whatever its
step. Its results are never reported under the sweep's settings.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ancre.checkpoint import CheckpointError
from ancre.config import ConfigError, flat_config, load_config
from ancre.config.resume import compare_configs
from ancre.run_folder import RunFolder, read_metrics
from ancre.sweep.expand import Sweep, SweepRun

SUMMARY_COLUMNS = ("run", "status", "step", "tokens", "val_loss", "val_ppl", "wall_s")


def changed_settings(run: SweepRun) -> list[str]:
    """The keys (``key: saved -> now``) in which the run folder's config differs from the run's.

    Only keys that change training count; an empty list when the folder holds no config
    (nothing ran yet) or the same run.
    """
    folder = RunFolder(run.folder)
    if not folder.config_file.is_file():
        return []
    try:
        saved = load_config(folder.config_file)
    except ConfigError as error:
        return [f"{folder.config_file} does not load ({error})"]
    refused, _, diverging = compare_configs(flat_config(saved), flat_config(run.config))
    return refused + diverging


def is_finished(run: SweepRun) -> bool:
    """Whether the run is done: a complete checkpoint at its last step, of its settings.

    A folder whose config differs (:func:`changed_settings`) holds another run.
    """
    if changed_settings(run):
        return False
    try:
        latest = RunFolder(run.folder).latest_verified()
        return latest is not None and latest.step >= run.config.train.steps
    except CheckpointError:
        return False  # a resume says what is wrong


def summary_rows(sweep: Sweep, wall_times: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per run: its status, last step and tokens, final validation loss and time.

    Args:
        sweep: The sweep.
        wall_times: Seconds spent running each run, by name (summed over restarts).

    Returns:
        Rows keyed by :data:`SUMMARY_COLUMNS`; missing values are None.
    """
    rows = []
    for run in sweep.runs:
        changed = changed_settings(run)  # another run's results are not shown as these
        records = [] if changed else read_metrics(RunFolder(run.folder).metrics_file).records
        evaluations = [r for r in records if "val_loss" in r]
        last = records[-1] if records else {}
        final = evaluations[-1] if evaluations else {}
        status = (
            "other settings" if changed
            else "done" if is_finished(run) else "partial" if records else "not run"
        )  # fmt: skip
        rows.append({
            "run": run.name, "status": status, "step": last.get("step"),
            "tokens": last.get("tokens"), "val_loss": final.get("val_loss"),
            "val_ppl": final.get("val_ppl"), "wall_s": wall_times.get(run.name),
        })  # fmt: skip
    return rows


def write_summary(sweep: Sweep, wall_times: Mapping[str, float]) -> tuple[Path, Path]:
    """Writes ``summary.csv`` and ``summary.md`` into the sweep's folder.

    Args:
        sweep: The sweep.
        wall_times: Seconds spent running each run, by name.

    Returns:
        The paths of the CSV and the Markdown files.
    """
    rows = summary_rows(sweep, wall_times)
    sweep.folder.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    csv_path, md_path = sweep.folder / "summary.csv", sweep.folder / "summary.md"
    csv_path.write_text(buffer.getvalue())
    lines = [
        f"# Sweep {sweep.name}",
        "",
        "| " + " | ".join(SUMMARY_COLUMNS) + " |",
        "|" + "|".join("---" if c in ("run", "status") else "---:" for c in SUMMARY_COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_cell(row[c]) for c in SUMMARY_COLUMNS) + " |" for row in rows]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e4 else f"{value:.4g}"
    return str(value)
