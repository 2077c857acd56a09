"""A golden loss curve: 20 fp32 CPU steps of the tiny Ancre model, so changed numerics show.

The curve in tests/assets/golden_tiny_fp32.json was written by this module
(``python -m tests.train.test_golden``) from the same run. A change that moves a loss by
more than the tolerance (a different initialisation, data order, schedule, mix or
optimiser step) fails here; when the change is meant, rewrite the file in the same commit
and say why.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers.training import REPO, records, sample_tokenizer_at, train_args, train_run

GOLDEN = REPO / "tests" / "assets" / "golden_tiny_fp32.json"
STEPS = 20
TOLERANCE = 2e-3
"""Nats. fp32 sums in another order (another CPU, BLAS or thread count) move the losses of
20 steps by about 1e-5; a real change of numerics moves them by 1e-2 or more."""


def golden_args(out: Path, tokenizer: Path) -> list[str]:
    """The golden run: the tests' tiny run for 20 steps, every step logged."""
    return train_args(
        out, "golden", tokenizer, f"train.steps={STEPS}", "train.warmup_steps=5",
        "eval.every=10", "checkpoint.every=0", "checkpoint.topology_every=0",
    )  # fmt: skip


def curve(run_dir: Path) -> dict[str, list[float]]:
    """Training loss per step and validation loss per evaluation of a run."""
    logged = records(run_dir)
    return {
        "loss": [r["loss"] for r in logged if "loss" in r],
        "val_loss": [r["val_loss"] for r in logged if "val_loss" in r],
    }


@pytest.mark.slow
def test_the_tiny_model_follows_its_golden_loss_curve(tmp_path, subprocess_env, sample_tokenizer):
    train_run(*golden_args(tmp_path, sample_tokenizer.path), env=subprocess_env)
    got, golden = curve(tmp_path / "golden"), json.loads(GOLDEN.read_text())
    assert len(got["loss"]) == STEPS and len(got["val_loss"]) == 3  # steps 0, 10, 20
    for key in ("loss", "val_loss"):
        assert got[key] == pytest.approx(golden[key], abs=TOLERANCE), key


def write_golden() -> None:
    """Trains the golden run once and writes its curve to tests/assets."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokenizer = sample_tokenizer_at(root / "sample.model")
        env = {**os.environ, "DS_ACCELERATOR": "cpu", "WANDB_MODE": "offline"}
        train_run(*golden_args(root, tokenizer.path), env=env)
        golden = curve(root / "golden")
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {GOLDEN}: final loss {golden['loss'][-1]:.4f}", file=sys.stderr)


if __name__ == "__main__":
    write_golden()
