"""After training: eval.tasks in the loop, ancre eval --tasks, generate and export.

One short run (ZeRO 2, with eval.tasks every 4 steps) serves every test.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, SAMPLE
from tests.helpers.local_task import TASK, longer_loses, task_env, write_task

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.slow

KEY = f"task/{TASK}/acc"


def ancre(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "ancre.cli", *args], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def records(run_dir) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"} for line in lines]


@pytest.fixture(scope="module")
def run(tmp_path_factory, sample_tokenizer, subprocess_env):
    out = tmp_path_factory.mktemp("tasks_run")
    docs, expected = longer_loses(sample_tokenizer, 9)
    tasks = write_task(out / "tasks", docs)
    env = task_env(subprocess_env, out)
    args = [
        str(REPO / "configs/quickstart.yaml"), f"run.out_dir={out}", "run.name=ref",
        f"data.path={SAMPLE}", f"data.tokenizer={sample_tokenizer.path}", "data.seq_len=64",
        "train.steps=8", "train.warmup_steps=2", "train.log_every=2", "train.micro_batch_size=4",
        "train.global_batch_size=8", "train.zero_stage=2", "eval.every=4", "eval.tokens=1024",
        "checkpoint.every=4", "checkpoint.topology_every=4", f"eval.tasks={TASK}",
        "eval.tasks_every=4", f"eval.tasks_path={tasks}",
    ]  # fmt: skip
    ancre("train", *args, env=env)
    return out / "ref", args, env, expected


def test_task_records_are_logged_with_the_known_accuracy(run):
    run_dir, _, _, expected = run
    logged = [r for r in records(run_dir) if KEY in r]
    assert [r["step"] for r in logged] == [4, 8]
    assert all(r[KEY] == pytest.approx(expected) for r in logged)
    assert all(r[f"task/{TASK}/acc_stderr"] > 0 for r in logged)


def test_a_run_resumed_with_tasks_logs_what_the_uninterrupted_run_logged(run, tmp_path):
    run_dir, args, env, _ = run
    middle = run_dir / "checkpoints" / "step_00000004"
    ancre("train", *args, f"run.out_dir={tmp_path}", f"checkpoint.resume={middle}", env=env)
    expected = [r for r in records(run_dir) if r["step"] > 4]
    assert records(tmp_path / "ref") == expected  # losses, val loss and task values equal
    assert any(KEY in r for r in expected)


def test_ancre_eval_tasks_writes_beside_the_checkpoint_and_into_the_metrics(run, tmp_path):
    run_dir, args, env, expected = run
    checkpoint = run_dir / "checkpoints" / "step_00000008"
    in_training = [r for r in records(run_dir) if KEY in r and r["step"] == 8][0]
    tasks = next(a.split("=", 1)[1] for a in args if a.startswith("eval.tasks_path="))
    result = ancre("eval", str(checkpoint), "--tasks", TASK, "--tasks-path", tasks, env=env)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["step"] == 8 and summary["tasks"][TASK]["acc"] == pytest.approx(expected)
    written = json.loads((run_dir / "checkpoints" / "step_00000008.tasks.json").read_text())
    assert written["step"] == 8 and written["metrics"][TASK]["acc"] == pytest.approx(expected)
    appended = records(run_dir)[-1]
    assert appended["step"] == 8 and appended["tokens"] == in_training["tokens"]
    assert appended[KEY] == in_training[KEY]  # the same weights, evaluated twice


def test_generate_and_export_read_the_zero_checkpoint(run, tmp_path):
    run_dir, _, env, _ = run
    checkpoint = str(run_dir / "checkpoints" / "step_00000008")
    greedy = ["--prompt", "The weather", "--temperature", "0", "--max-new-tokens", "16"]
    first = ancre("generate", checkpoint, *greedy, env=env)
    assert first.stdout.startswith("The weather") and len(first.stdout) > len("The weather\n")
    assert ancre("generate", checkpoint, *greedy, env=env).stdout == first.stdout
    assert "tokens/s, KV cache" in first.stderr
    ancre("convert", checkpoint, str(tmp_path / "hf"), "--format", "hf", env=env)
    card = (tmp_path / "hf" / "README.md").read_text()
    final = [r for r in records(run_dir) if "val_loss" in r and r["step"] == 8][0]["val_loss"]
    assert f"| final validation loss | {final:.4f} (the run's evaluation at step 8" in card
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["topology_kind"] == "ancre" and config["topology_temperature"] == 0.01
