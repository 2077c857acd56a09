"""Resuming on another number of processes or ZeRO stage (real DeepSpeed, gloo, torchrun).

Three changes, each resumed through ``ancre train`` and, separately, loaded by
restore_probe.py (the run's own restore, then an immediate save):

- 2 processes at ZeRO 2 -> 1 process at ZeRO 0 (two DataLoader workers: still 2 readers)
- 2 processes at ZeRO 2 -> 2 processes at ZeRO 3
- 1 process at ZeRO 0 (two workers) -> 2 processes at ZeRO 2, from the first change's run

Each keeps the number of readers, so the data continues exactly and the first resumed
step can be compared with the uninterrupted run's. A fourth run changes the number of
readers (2 -> 1) and checks what is said and recorded; tests/data/test_regroup.py checks
that guarantee document by document.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ancre.checkpoint import CheckpointFolder
from ancre.config import load_config
from ancre.data.tokenizer import Tokenizer
from ancre.model import build_model
from ancre.train.engine import consolidated_weights
from ancre.train.universal import make_universal, read_universal
from tests.conftest import REPO
from tests.helpers.training import records, run_ancre, train_args

pytestmark = pytest.mark.slow

LOSS_RTOL = 1e-5
"""The first resumed step sees the same weights and the same sequences; only the order of
fp32 sums may differ (per-token losses summed per micro-batch and over processes, when the
micro-batches or the processes change). 256 tokens per micro-batch in fp32 (eps 1.2e-7)
reorder to well under 1e-6 relative; 1e-5 leaves room and still fails for any real change
of state or data (a single Adam step moves the loss by about 1e-2 here)."""
PROBE = REPO / "tests" / "train" / "restore_probe.py"


def launch(processes: int, script: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, *script]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", *script]  # fmt: skip


def checkpoint(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:08d}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, subprocess_env, sample_tokenizer):
    """An uninterrupted 8-step run, 2 processes at ZeRO 2, a checkpoint every 2 steps."""
    out = tmp_path_factory.mktemp("reshard")
    args = train_args(
        out, "ref", sample_tokenizer.path, "train.zero_stage=2", "checkpoint.every=2"
    )  # fmt: skip
    result = run_ancre("train", *args, env=subprocess_env, processes=2)
    assert result.returncode == 0, result.stderr[-4000:]
    return out / "ref", args


def resume(reference, source: Path, name: str, processes: int, changes: list[str], env):
    """Resumes ``source`` into a new run folder with ``changes``; returns it and the log."""
    _, args = reference
    resumed = [*args, f"run.name={name}", f"checkpoint.resume={source}", *changes]
    result = run_ancre("train", *resumed, env=env, processes=processes)
    assert result.returncode == 0, result.stderr[-4000:]
    return source.parent.parent.parent / name, result.stderr


@pytest.fixture(scope="module")
def on_one_process(reference, subprocess_env):
    """The reference resumed at step 4 on 1 process at ZeRO 0 with two workers."""
    run_dir, _ = reference
    changes = ["train.zero_stage=0", "data.num_workers=2"]
    return resume(reference, checkpoint(run_dir, 4), "p1", 1, changes, subprocess_env)[0]


CASES = {
    "2p-zero2-to-1p-zero0": (1, ["train.zero_stage=0", "data.num_workers=2"]),
    "2p-zero2-to-2p-zero3": (2, ["train.zero_stage=3"]),
    "1p-zero0-to-2p-zero2": (2, ["train.zero_stage=2", "data.num_workers=0"]),
}


@pytest.fixture(scope="module", params=list(CASES))
def change(request, reference, on_one_process, subprocess_env):
    """(checkpoint, uninterrupted run, resumed run, processes, changes) of one case."""
    processes, changes = CASES[request.param]
    run_dir, _ = reference
    if request.param == "2p-zero2-to-1p-zero0":
        return checkpoint(run_dir, 4), run_dir, on_one_process, processes, changes
    if request.param == "2p-zero2-to-2p-zero3":
        source, uninterrupted = checkpoint(run_dir, 4), run_dir
    else:
        source, uninterrupted = checkpoint(on_one_process, 6), on_one_process
    resumed, _ = resume(reference, source, request.param, processes, changes, subprocess_env)
    return source, uninterrupted, resumed, processes, changes


def pending_tokens(folder: Path) -> int:
    """Read-but-untrained tokens of every reader in a checkpoint's ranks/ files."""
    states = [json.loads(p.read_text())["data"] for p in sorted((folder / "ranks").iterdir())]
    return sum(len(r["pending"]) for s in states for r in s["readers"] if r)


def test_the_first_resumed_step_has_the_uninterrupted_loss(change):
    source, uninterrupted, resumed, _, _ = change
    step = int(source.name.removeprefix("step_"))
    first = next(r for r in records(resumed) if r["step"] == step + 1 and "loss" in r)
    expected = next(r for r in records(uninterrupted) if r["step"] == step + 1 and "loss" in r)
    assert first["loss"] == pytest.approx(expected["loss"], rel=LOSS_RTOL, abs=0)
    [record] = [r["resumed"] for r in records(resumed) if "resumed" in r]
    if "data" not in record:  # same processes and workers: every rank reads its own position
        assert "processes" not in record and "num_workers" not in record
        return
    data = record["data"]
    assert data["exact"] and data["documents_skipped"] == 0 and data["lines_handed_over"] == 0
    assert data["pending_tokens_carried"] == pending_tokens(source)


def test_weights_and_adam_state_come_back_exactly(change, tmp_path, subprocess_env):
    source, _, _, processes, changes = change
    result = subprocess.run(
        launch(processes, [str(PROBE), str(source), str(tmp_path), *changes]),
        env=subprocess_env, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    before = load_config(source / "config.yaml")
    after = load_config(source / "config.yaml", changes)
    model = build_model(before, Tokenizer(source / "tokenizer.model").vocab_size)
    make_universal(CheckpointFolder(source), before.train.zero_stage, model, before)
    make_universal(CheckpointFolder(tmp_path), after.train.zero_stage, model, after)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    saved, saved_step = read_universal(CheckpointFolder(source), names)
    loaded, loaded_step = read_universal(CheckpointFolder(tmp_path), names)
    assert loaded_step == saved_step > 0
    # the universal form's weights are DeepSpeed's own consolidation of the checkpoint
    weights = consolidated_weights(source / "engine", before.train.zero_stage)
    for name in names:
        assert torch.equal(saved[name]["fp32"], weights[name].reshape(saved[name]["fp32"].shape))
        for key in ("fp32", "exp_avg", "exp_avg_sq"):
            assert torch.equal(loaded[name][key], saved[name][key]), (name, key)
    assert saved["topology.logits"]["fp32"].dtype == torch.float32


def test_other_readers_and_an_allowed_batch_change_are_said_and_recorded(reference, subprocess_env):
    run_dir, _ = reference
    source = checkpoint(run_dir, 4)
    changes = [
        "train.zero_stage=1",
        "train.global_batch_size=4",
        "checkpoint.allow_batch_change=true",
    ]
    resumed, log = resume(reference, source, "readers", 1, changes, subprocess_env)
    assert "exact continuation is impossible with 2 readers before and 1 now" in log
    [record] = [r["resumed"] for r in records(resumed) if "resumed" in r]
    assert record["processes"] == "2 -> 1" and record["zero_stage"] == "2 -> 1"
    assert record["global_batch_size"] == "8 -> 4"
    # tokens go on from the checkpoint's 4 x 8 x 64 at 4 x 64 per step
    assert [r["tokens"] for r in records(resumed) if "loss" in r] == [2304, 2560, 2816, 3072]
    data = record["data"]
    assert not data["exact"] and data["readers"] == "2 -> 1"
    assert data["documents_skipped"] == 0
    assert data["pending_tokens_carried"] == pending_tokens(source)
    assert [r["step"] for r in records(resumed) if "loss" in r] == [5, 6, 7, 8]
