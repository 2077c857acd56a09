"""The run folder: the one owner of every path in it (format version 1).

::

    runs/<name>/
      run.lock                    the job that owns the folder (lock.py)
      config.yaml                 the resolved config of the run
      tokenizer.model             the run's tokenizer (sentencepiece or tokenizers JSON)
      metrics.jsonl               one JSON object per event (metrics.py reads it)
      topology/step_00000100.json topology snapshots
      checkpoints/step_00000200/  checkpoints (ancre.checkpoint: one folder's files)
      checkpoints/step_00000200.tasks.json  downstream-task results of that checkpoint
      checkpoints/step_00000200.ablation.json  ancre ablate's result for it
      checkpoints/latest          the newest complete checkpoint, written last
      superseded/                 complete checkpoints newer than a resume point
      wandb/                      Weights & Biases files, when enabled

Modules: ``layout`` (paths, ``latest``), ``metrics`` (the one metrics reader),
``lock``, ``plan`` (start, start over or resume: decided before anything changes),
``rewind`` and ``retention`` (what changes). None of them imports torch.
"""

from ancre.run_folder.layout import (
    EXPORT_MARKER,
    RUN_ENTRIES,
    RunFolder,
    RunFolderError,
    ablation_file,
    checkpoint_of,
    task_results_file,
)
from ancre.run_folder.lock import RunLock, RunLockedError
from ancre.run_folder.metrics import Metrics, read_metrics
from ancre.run_folder.plan import RunPlan, plan_run
from ancre.run_folder.retention import prune, start_over
from ancre.run_folder.rewind import rewind

__all__ = [
    "ablation_file",
    "EXPORT_MARKER",
    "RUN_ENTRIES",
    "checkpoint_of",
    "Metrics",
    "RunFolder",
    "RunFolderError",
    "RunLock",
    "RunLockedError",
    "RunPlan",
    "plan_run",
    "prune",
    "read_metrics",
    "rewind",
    "start_over",
    "task_results_file",
]
