"""Downstream tasks through lm-evaluation-harness (the optional ``lm-eval`` package).

``harness`` wraps a model as an ``lm_eval`` LM and runs tasks; ``results`` turns its
output into the JSON written beside a checkpoint and the metrics.jsonl record;
``in_training`` runs ``eval.tasks`` from the training loop. Only ``harness`` imports
lm_eval, and it is imported when tasks are asked for (:func:`load_harness`), so the
base install never needs the package.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

INSTALL = "pip install 'ancre[eval]'"


class TaskError(RuntimeError):
    """Tasks cannot be run as asked; the message says what to do."""


def parse_tasks(text: str, key: str = "--tasks") -> list[str]:
    """Task names from a comma-separated list (``hellaswag,arc_easy``).

    Raises:
        TaskError: The list names no task.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise TaskError(f"{key}={text!r} names no task; give e.g. hellaswag,arc_easy")
    return names


def load_harness() -> ModuleType:
    """``ancre.tasks.harness``, imported now: lm-eval is an optional dependency.

    Raises:
        TaskError: lm-eval is not installed (the message says how to install it).
    """
    if importlib.util.find_spec("lm_eval") is None:
        raise TaskError(f"downstream tasks need the lm-eval package: {INSTALL}")
    return importlib.import_module("ancre.tasks.harness")
