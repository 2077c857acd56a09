"""``eval.tasks`` in the training loop: when the tasks run and the record they log.

They run on the main process, on the fp32 weights it holds (ZeRO 0-2), without
gradients; the other processes wait at a barrier. The evaluation leaves the random
states as it found them and changes no weight, so a resumed run still logs exactly the
metrics of an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

from ancre.config import EvalConfig
from ancre.data.tokenizer import Tokenizer
from ancre.model import Transformer
from ancre.tasks import load_harness, parse_tasks
from ancre.tasks.results import metrics_record


def check_tasks(config: EvalConfig) -> None:
    """Checks before a run starts that ``eval.tasks`` can run: lm-eval, the names, the folder.

    Raises:
        TaskError: lm-eval is missing, a task is unknown or the tasks folder is missing.
    """
    if config.tasks is not None:
        load_harness().task_manager(parse_tasks(config.tasks, "eval.tasks"), config.tasks_path)


class TaskSchedule:
    """Runs ``eval.tasks`` every ``eval.tasks_every`` steps.

    Attributes:
        names: The tasks.
        every: Steps between evaluations (0: at the end only).
    """

    def __init__(self, config: EvalConfig, tokenizer: Tokenizer) -> None:
        assert config.tasks is not None  # built only when tasks are configured
        self.names = parse_tasks(config.tasks, "eval.tasks")
        self.every = config.tasks_every
        self.config = config
        self.tokenizer = tokenizer
        self._harness = load_harness()

    def due(self, step: int) -> bool:
        """Whether the tasks run after ``step`` (never at step 0: nothing is trained yet)."""
        return bool(self.every) and step > 0 and step % self.every == 0

    def run(self, model: Transformer) -> dict[str, Any]:
        """Evaluates the model; returns the ``task/<task>/<metric>`` values of the record."""
        was_training = model.training
        try:
            results = self._harness.run_tasks(
                model, self.tokenizer, self.names, self.config.tasks_path,
                self.config.tasks_limit, self.config.micro_batch_size, progress=False,
            )  # fmt: skip
        finally:
            model.train(was_training)
        return metrics_record(results)
