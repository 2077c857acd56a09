"""tools/compare_seeds.py on run folders written here: labels, means, steps, costs."""

from __future__ import annotations

import json
import subprocess
import sys

from ancre.config import load_config, save_config
from ancre.run_folder import RunFolder
from tests.conftest import REPO


def write_run(root, name, overrides, losses, rate, last_rms=None):
    config = load_config(None, ["model.preset=tiny", "model.vocab_size=256", "data.seq_len=32",
                                "train.micro_batch_size=2", "train.steps=20",
                                "train.warmup_steps=2", *overrides])  # fmt: skip
    folder = RunFolder(root / name)
    folder.root.mkdir(parents=True)
    save_config(config, folder.config_file)
    lines = [{"step": 10 * k, "tokens": 640 * k, "val_loss": loss} for k, loss in enumerate(losses)]
    lines.insert(1, {"step": 5, "tokens": 320, "loss": 5.0, "tokens_per_s": rate})
    if last_rms is not None:  # the per-block statistics: the last record counts
        for step, rms in ((0, 0.02), (20, last_rms)):
            lines.append({"step": step, "block_stats": {"state_rms": [0.02, 1.0, rms]}})
    folder.metrics_file.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_one_row_per_wiring_with_its_costs(tmp_path, subprocess_env):
    for seed in (0, 1):
        write_run(tmp_path, f"cascaded-d0-s{seed}", ["topology.kind=cascaded"], [6, 5, 4], 1000.0)
        dynamic = ["topology.kind=hyper", "topology.dynamic=true"]
        write_run(tmp_path, f"hyper-d1-s{seed}", dynamic, [6, 4, 3 + seed], 500.0, 2.0 + seed)
    write_run(tmp_path, "hyper-d1-s2", dynamic, [6, 3], 500.0)  # still running: left out
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "compare_seeds.py"), str(tmp_path),
         "--baseline", "cascaded-d0"],
        capture_output=True, text=True, env=subprocess_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "left out, not finished: hyper-d1-s2"
    rows = {line.split()[0]: line.split() for line in lines[3:5]}
    assert set(rows) == {"cascaded-d0", "hyper-d1"}
    hyper = rows["hyper-d1"]
    assert hyper[1:5] == ["2", "3.5000", "0.7071", "33.12"]
    # per seed: 3 - 4 and 4 - 4, so -0.5 +- 0.7071: within one spread of zero (*)
    assert hyper[5:7] == ["-0.5000*", "0.7071"]
    assert "within one sd of zero: hyper-d1" in result.stdout
    # cascaded ends at 4 at step 20; hyper passes 4 at step 10 in both seeds: half the steps
    assert hyper[7] == "0.500"
    assert hyper[8] == "2.5"  # RMS of the last state at the last record, mean over seeds
    assert hyper[9] == f"{6 * (128 * 7 + 2) + 6 * 4 * 6:,d}"
    assert hyper[10] == "2.000x"  # half the tokens per second
    assert float(hyper[11].rstrip("x")) > 1.0  # the streams are kept
    assert rows["cascaded-d0"][5:10] == ["1.000", "n/a", "0", "1.000x", "1.000x"]
