"""Task results: the JSON written beside a checkpoint and the metrics.jsonl record.

A record carries one number per task and metric, keyed ``task/<task>/<metric>``
(``task/arc_easy/acc``, ``task/arc_easy/acc_stderr``; a filter other than the default
is appended, ``task/gsm8k/exact_match/strict-match``), so ``ancre viz`` and sweep
summaries read them as any other series.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ancre.atomic import write_text_atomic

FORMAT = "ancre-task-results"
VERSION = 1


def task_metrics(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Task -> metric -> value, from the harness's ``results`` (aliases and N/A left out)."""
    table: dict[str, dict[str, float]] = {}
    for task, values in results.get("results", {}).items():
        for key, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or "," not in key:
                continue
            metric, _, selected = key.partition(",")
            name = metric if selected == "none" else f"{metric}/{selected}"
            table.setdefault(task, {})[name] = float(value)
    return table


def metrics_record(results: dict[str, Any]) -> dict[str, float | None]:
    """The flat ``task/<task>/<metric>`` values of a metrics.jsonl record (NaN as None)."""
    return {
        f"task/{task}/{metric}": value if math.isfinite(value) else None
        for task, metrics in task_metrics(results).items()
        for metric, value in metrics.items()
    }


def write_results(
    path: Path,
    results: dict[str, Any],
    source: Path,
    step: int | None,
    tokens: int | None,
    limit: int | None,
) -> None:
    """Writes the results file (atomically).

    Args:
        path: The file.
        results: The harness's results.
        source: The checkpoint or conversion evaluated.
        step: Its training step, if known.
        tokens: Its training tokens, if known.
        limit: The documents-per-task limit of the run (None: every document).
    """
    content = {
        "format": FORMAT,
        "version": VERSION,
        "source": str(source),
        "step": step,
        "tokens": tokens,
        "limit": limit,
        "metrics": task_metrics(results),
        "n_samples": results.get("n-samples", {}),
        "versions": results.get("versions", {}),
        "harness": results.get("results", {}),
    }
    write_text_atomic(path, json.dumps(content, indent=2, default=str) + "\n")
