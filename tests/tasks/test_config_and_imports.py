"""eval.tasks settings are checked, and the base import path never loads lm_eval."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ancre.config import ConfigError, load_config
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["eval.tasks_every=10"], "eval.tasks"),
        (["eval.tasks_path=/tmp"], "eval.tasks"),
        (["eval.tasks=hellaswag", "train.zero_stage=3"], "eval.tasks"),
        (["eval.tasks=hellaswag", "eval.tasks_every=-1"], "eval.tasks_every"),
        (["eval.tasks=hellaswag", "eval.tasks_limit=0"], "eval.tasks_limit"),
    ],
)
def test_bad_task_settings_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "configs/quickstart.yaml", overrides)
    assert caught.value.key == key


def test_training_generation_and_export_never_import_lm_eval_or_transformers():
    code = (
        "import sys, ancre.cli, ancre.train.run, ancre.train.commands, ancre.generate.commands, "
        "ancre.export.commands, ancre.tasks.in_training;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lm_eval', 'transformers'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
