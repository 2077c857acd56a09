"""ZeRO-3 builds the model partitioned (``deepspeed.zero.Init``) with a whole build's weights."""

from __future__ import annotations

import pytest
import torch

from ancre.checkpoint import CheckpointFolder
from ancre.train.engine import consolidated_weights
from tests.helpers.training import records, run_ancre, train_args

BUILDS = {
    "normal": ["model.init=normal"],
    "depth_scaled": ["model.init=depth_scaled"],
    # MUDD's weight MLPs are drawn after the blocks, through Module.apply: drawn whole
    "mudd-block-options": ["topology.kind=mudd", "model.laurel=rw_lr", "model.laurel_rank=4",
                           "model.value_residual=true"],
}  # fmt: skip


@pytest.mark.parametrize("build", BUILDS.values(), ids=BUILDS.keys())
def test_a_partitioned_build_starts_from_the_weights_of_a_whole_one(
    build, tmp_path, subprocess_env, sample_tokenizer
):
    runs = {"zero0": (0, 2), "zero3": (3, 2)}  # name: ZeRO stage, processes (the same split)
    for name, (stage, processes) in runs.items():
        args = train_args(
            tmp_path, name, sample_tokenizer.path, f"train.zero_stage={stage}",
            *build, "train.steps=1", "train.warmup_steps=1", "eval.every=0",
            "checkpoint.topology_every=0",
        )  # fmt: skip
        result = run_ancre("train", *args, env=subprocess_env, processes=processes)
        assert result.returncode == 0, result.stderr[-3000:]
    # the step-0 evaluation reads the weights as drawn: the same weights, the same loss
    initial = {name: records(tmp_path / name)[0] for name in runs}
    assert initial["zero0"]["step"] == initial["zero3"]["step"] == 0
    assert initial["zero3"]["val_loss"] == initial["zero0"]["val_loss"]
    saved = {}
    for name, (stage, _) in runs.items():  # both wrote their fp32 master weights
        folder = CheckpointFolder(tmp_path / name / "checkpoints" / "step_00000001").verify()
        saved[name] = consolidated_weights(folder.folder.engine, stage)
        assert {t.dtype for t in saved[name].values()} == {torch.float32}
    for key, weight in saved["zero0"].items():  # one step from the same draws: near equal
        torch.testing.assert_close(saved["zero3"][key], weight, rtol=0, atol=1e-4, msg=key)
