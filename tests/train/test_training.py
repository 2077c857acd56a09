"""Real training runs through DeepSpeed on the CPU: one and two processes, ZeRO 0 and 2."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ancre.checkpoint import CheckpointFolder
from ancre.config import load_config
from ancre.data.tokenizer import Tokenizer
from ancre.data.validation import validation_set
from ancre.model import build_model
from ancre.snapshot import read_snapshot
from ancre.train.engine import consolidated_weights
from tests.conftest import SAMPLE
from tests.helpers.training import latest_checkpoint, records, run_ancre, train_args, train_run

pytestmark = pytest.mark.slow

STEPS = 50


@dataclass(frozen=True)
class Run:
    zero_stage: int
    processes: int
    precision: str = "fp32"
    own_tokenizer: bool = False

    @property
    def name(self) -> str:
        return f"zero{self.zero_stage}-p{self.processes}-{self.precision}"


RUNS = [
    Run(0, 1, own_tokenizer=True),
    Run(2, 1, precision="bf16"),
    Run(0, 2),
    Run(2, 2),
]


@pytest.fixture(scope="module", params=RUNS, ids=lambda run: run.name)
def trained(request, tmp_path_factory, subprocess_env, sample_tokenizer) -> tuple[Run, Path]:
    run: Run = request.param
    out = tmp_path_factory.mktemp("runs")
    tokenizer = "null" if run.own_tokenizer else str(sample_tokenizer.path)
    args = train_args(
        out, run.name, tokenizer, "data.tokenizer_vocab_size=512", f"train.steps={STEPS}",
        "train.lr=3e-3", "train.warmup_steps=5", f"train.precision={run.precision}",
        f"train.zero_stage={run.zero_stage}", "train.log_every=10", "eval.every=25",
        "eval.tokens=4096", "checkpoint.every=0", "checkpoint.topology_every=10",
    )  # fmt: skip
    train_run(*args, env=subprocess_env, processes=run.processes)
    return run, out / run.name


def test_validation_loss_falls_and_metrics_are_written(trained):
    run, run_dir = trained
    logged = records(run_dir, timed=True)
    train_steps = [r["step"] for r in logged if "loss" in r]
    evals = [r for r in logged if "val_loss" in r]
    assert train_steps == [10, 20, 30, 40, 50]
    assert [r["step"] for r in evals] == [0, 25, 50]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0
    assert evals[-1]["val_tokens"] == 4096
    last = [r for r in logged if "loss" in r][-1]
    assert last["tokens"] == STEPS * 8 * 64
    assert last["tokens_per_s"] > 0 and last["lr"] > 0 and last["grad_norm"] > 0


def test_topology_snapshots_are_valid_and_learned(trained):
    _, run_dir = trained
    files = sorted((run_dir / "topology").glob("step_*.json"))
    assert [f.name for f in files] == [f"step_{s:08d}.json" for s in range(0, STEPS + 1, 10)]
    first, last = read_snapshot(files[0]), read_snapshot(files[-1])  # rows sum to 1, tril
    assert first.parameterisation == "softmax" and first.num_layers == 6
    assert first.matrix[3][:4] == pytest.approx([0.25] * 4)
    assert last.matrix != first.matrix


def test_checkpoint_loads_back_into_an_identical_model(trained):
    run, run_dir = trained
    folder = latest_checkpoint(run_dir)
    assert folder is not None and folder.name == f"step_{STEPS:08d}"
    manifest = CheckpointFolder(folder).verify().manifest
    assert (manifest["world_size"], manifest["zero_stage"]) == (run.processes, run.zero_stage)

    weights = consolidated_weights(folder / "engine", run.zero_stage)
    assert weights["topology.logits"].dtype == torch.float32

    config = load_config(folder / "config.yaml")
    tokenizer = Tokenizer(folder / "tokenizer.model")
    model = build_model(config, tokenizer.vocab_size)
    model.load_state_dict(weights, strict=True)
    snapshot = read_snapshot(folder / "topology.json")
    torch.testing.assert_close(model.topology.matrix(), torch.tensor(snapshot.matrix))

    inputs, targets = validation_set(config.data, tokenizer, config.eval.tokens)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=run.precision == "bf16"):
        loss = model(inputs, targets, reduction="sum") / targets.numel()
    final = [r for r in records(run_dir) if "val_loss" in r][-1]
    tolerance = 2e-3 if run.precision == "bf16" else 1e-5
    assert float(loss) == pytest.approx(final["val_loss"], rel=tolerance)


def evaluate_with(processes: int, folder: Path, env: dict[str, str]) -> dict:
    result = run_ancre("eval", str(folder), env=env, processes=processes)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_eval_command_reproduces_the_final_validation_loss(trained, subprocess_env):
    run, run_dir = trained
    evaluated = evaluate_with(1, run_dir / "checkpoints" / f"step_{STEPS:08d}", subprocess_env)
    final = [r for r in records(run_dir) if "val_loss" in r][-1]
    assert evaluated["step"] == STEPS and evaluated["val_tokens"] == 4096
    assert evaluated["val_loss"] == pytest.approx(final["val_loss"], rel=1e-6)
    if run.processes == 2 and run.zero_stage == 2:
        # the same weights give the same validation loss on one and on two processes; the
        # run folder stands for its newest complete checkpoint
        two = evaluate_with(2, run_dir, subprocess_env)
        assert two["val_tokens"] == evaluated["val_tokens"]
        assert two["val_loss"] == pytest.approx(evaluated["val_loss"], rel=1e-6)


def test_bad_input_is_skipped_counted_and_reported(
    tmp_path, subprocess_env, sample_tokenizer
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for shard in SAMPLE.glob("c4-*.json.gz"):
        (corpus / shard.name).write_bytes(shard.read_bytes())
    good = json.dumps({"text": "A short and valid document about the river."})
    bad = [good, "{not json", json.dumps({"url": "x"}), json.dumps({"text": "  "}), good]
    raw = "\n".join(bad).encode() + b"\n\xff\xfe broken utf-8\n"
    (corpus / "c4-train.00000-bad.jsonl").write_bytes(raw)
    truncated = gzip.compress(((good + "\n") * 400).encode())
    (corpus / "c4-train.00000-cut.json.gz").write_bytes(truncated[: len(truncated) // 2])
    args = train_args(
        tmp_path, "bad", sample_tokenizer.path, f"data.path={corpus}", "data.shuffle=false",
        "data.num_workers=1", "train.steps=6", "train.global_batch_size=4", "train.log_every=3",
        "eval.every=0", "checkpoint.every=0", "checkpoint.topology_every=0",
    )  # fmt: skip
    result = train_run(*args, env=subprocess_env)
    skipped = [r for r in records(tmp_path / "bad") if "loss" in r][-1]["data_skipped"]
    assert skipped == {
        "malformed_json": 1, "missing_field": 1, "empty": 1, "invalid_utf8": 1,
        "truncated_file": 1,
    }  # fmt: skip
    assert "c4-train.00000-bad.jsonl:2 (malformed_json)" in result.stderr
    assert "c4-train.00000-cut.json.gz" in result.stderr


def test_recompute_under_zero3_changes_no_metric(
    tmp_path, subprocess_env, sample_tokenizer
) -> None:
    logged = {}
    for mode in ("none", "blocks"):
        args = train_args(
            tmp_path, mode, sample_tokenizer.path, "train.steps=6", "train.zero_stage=3",
            f"train.recompute={mode}", "eval.every=0", "checkpoint.every=0",
            "checkpoint.topology_every=20",
        )  # fmt: skip
        train_run(*args, env=subprocess_env)
        logged[mode] = records(tmp_path / mode)
    assert logged["blocks"] == logged["none"]
