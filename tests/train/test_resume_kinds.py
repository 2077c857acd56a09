"""The learned wirings of other papers resume exactly after a kill, like the others."""

from __future__ import annotations

import pytest

from ancre.run_folder import RunFolder
from ancre.snapshot import read_snapshot
from tests.train.test_resume import kill_when, start
from tests.training import records, run_ancre, train_args

pytestmark = pytest.mark.slow

KINDS = {
    "denseformer": ["topology.kind=denseformer", "topology.dilation=2"],
    "hyper-dynamic": ["topology.kind=hyper", "topology.streams=2", "topology.dynamic=true"],
    "mhc-dynamic": ["topology.kind=mhc", "topology.streams=2", "topology.dynamic=true"],
    "attnres-blocks": ["topology.kind=attnres", "topology.attnres_blocks=3"],
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
    assert kill_when(popen, lambda: (latest := folder.latest()) is not None and latest.name
                     == "step_00000004")  # fmt: skip
    result = run_ancre("train", *args(tmp_path / "killed"), env=subprocess_env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert records(run_dir) == expected  # losses, grad norms, val loss: equal
    for step in (0, 4, 8):
        snapshot = read_snapshot(folder.snapshot_path(step))
        assert snapshot.parameterisation == overrides[0].split("=")[1]
        assert (snapshot.probe is not None) == (
            "dynamic" in str(overrides) or "attnres" in str(overrides)
        )
