"""``ancre eval CHECKPOINT --tasks ...``: a checkpoint or conversion on downstream tasks.

The results go beside the evaluated folder (``<folder>.tasks.json``) and, for a
checkpoint inside its run folder, into the run's metrics.jsonl as one record at the
checkpoint's step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ancre.run_folder import RunFolder, task_results_file
from ancre.tasks import load_harness, parse_tasks
from ancre.tasks.results import metrics_record, task_metrics, write_results
from ancre.train.metrics import JsonlSink
from ancre.train.trained import load_trained

logger = logging.getLogger(__name__)


def evaluate_tasks(
    source: Path,
    tasks: str,
    tasks_path: Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
) -> dict[str, Any]:
    """Runs tasks on a checkpoint (any ZeRO stage) or a conversion and records the results.

    Args:
        source: The checkpoint or conversion folder.
        tasks: Comma-separated task names (``hellaswag,arc_easy``).
        tasks_path: A folder of task YAML files of one's own.
        limit: At most this many documents per task.
        batch_size: Requests per forward pass.
        device: Where the model runs.

    Returns:
        The step, each task's metrics, and where they were written.

    Raises:
        TaskError: lm-eval is missing, a task is unknown or its data unreachable.
        FileNotFoundError: The source is neither a checkpoint nor a conversion.
        CheckpointError: The checkpoint does not verify.
    """
    names = parse_tasks(tasks)
    harness = load_harness()
    trained = load_trained(source, device)
    results = harness.run_tasks(
        trained.model, trained.tokenizer, names, tasks_path, limit, batch_size
    )
    written = task_results_file(trained.folder)
    write_results(written, results, trained.folder, trained.step, trained.tokens, limit)
    logger.info("task results: %s", written)
    summary: dict[str, Any] = {
        "step": trained.step,
        "tasks": task_metrics(results),
        "results_file": str(written),
    }
    run = RunFolder.holding(trained.folder) if trained.is_checkpoint else None
    if run is not None:
        sink = JsonlSink(run.metrics_file)
        try:
            sink.log({"step": trained.step, "tokens": trained.tokens, **metrics_record(results)})
        finally:
            sink.close()
        summary["metrics_file"] = str(run.metrics_file)
    return summary
