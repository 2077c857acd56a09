"""The learned wirings of other papers, and the forms of topology.form, resume exactly
after a kill, like the others; the per-block statistics resume with them."""

from __future__ import annotations

import pytest

from ancre.run_folder import RunFolder
from ancre.snapshot import read_snapshot
from tests.helpers.training import records, run_ancre, train_args
from tests.train.test_resume import kill_when, start

pytestmark = pytest.mark.slow

KINDS = {
    "denseformer": ["topology.kind=denseformer", "topology.dilation=2"],
    "hyper-dynamic": ["topology.kind=hyper", "topology.streams=2", "topology.dynamic=true"],
    "mhc-dynamic": ["topology.kind=mhc", "topology.streams=2", "topology.dynamic=true"],
    "attnres-blocks": ["topology.kind=attnres", "topology.attnres_blocks=3"],
    "frac-dynamic": [
        "topology.kind=hyper",
        "topology.streams=1",
        "topology.fractions=2",
        "topology.dynamic=true",
    ],
    "ancre-replace": ["topology.kind=ancre", "topology.form=replace", "topology.init=predecessor"],
    "ancre-gated": ["topology.kind=ancre", "topology.form=gated", "train.block_stats_every=4"],
    "mudd-window-block-options": [
        "topology.kind=mudd",
        "topology.window=2",
        "model.laurel=rw_lr",
        "model.laurel_rank=4",
        "model.value_residual=true",
    ],
}


@pytest.mark.parametrize("overrides", KINDS.values(), ids=KINDS.keys())
def test_killed_run_resumes_to_the_uninterrupted_metrics(
    overrides, tmp_path, sample_tokenizer, subprocess_env
):
    def args(out):
        return train_args(out, "run", sample_tokenizer.path, "checkpoint.every=2", *overrides)

    result = run_ancre("train", *args(tmp_path / "whole"), env=subprocess_env)
    assert result.returncode == 0, result.stderr[-4000:]
    expected = records(tmp_path / "whole" / "run")

    run_dir = tmp_path / "killed" / "run"
    folder = RunFolder(run_dir)
    popen = start(args(tmp_path / "killed"), subprocess_env)
    # killed after any checkpoint but the last (a poll verifies the checkpoint: on a loaded
    # machine it may take longer than a fast kind's two steps)
    assert kill_when(popen, lambda: (latest := folder.latest()) is not None and latest.name
                     in ("step_00000002", "step_00000004", "step_00000006"))  # fmt: skip
    result = run_ancre("train", *args(tmp_path / "killed"), env=subprocess_env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert records(run_dir) == expected  # losses, grad norms, val loss, block stats: equal
    stats_steps = [r["step"] for r in expected if "block_stats" in r]
    assert stats_steps == ([0, 4, 8] if "train.block_stats_every=4" in overrides else [0, 8])
    kind = overrides[0].split("=")[1]
    for step in (0, 4, 8):
        snapshot = read_snapshot(folder.snapshot_path(step))
        expected = {"ancre": "softmax"}.get(kind, kind)
        if "topology.fractions=2" in overrides:
            expected = "frac"
        assert snapshot.parameterisation == expected
        assert (snapshot.probe is not None) == (
            any(name in str(overrides) for name in ("dynamic", "attnres", "mudd"))
        )
        form = next((o.split("=")[1] for o in overrides if o.startswith("topology.form=")), None)
        assert snapshot.form == (form or "additive")
        assert (snapshot.gates is not None) == (form == "gated")
        if snapshot.gates is not None:  # zero at step 0, learned after
            assert any(snapshot.gates) == (step > 0)
