"""ancre viz runs on json, numpy and matplotlib alone: no torch, no deepspeed."""

import subprocess
import sys
from pathlib import Path

from ancre.snapshot import write_snapshot
from tests.helpers.viz_builders import make_snapshot, softmax_matrix

PACKAGE = Path(__file__).resolve().parents[2] / "ancre" / "viz"


def test_viz_never_imports_torch_or_deepspeed(tmp_path, subprocess_env):
    run = tmp_path / "r"
    (run / "topology").mkdir(parents=True)
    write_snapshot(make_snapshot(softmax_matrix(3)), run / "topology" / "step_00000100.json")
    modules = [f"ancre.viz.{p.stem}" for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__init__"]
    code = (
        f"import sys, importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"from ancre.cli import main\n"
        f"assert main(['viz', {str(run)!r}, '--out', {str(tmp_path / 'out')!r}]) == 0\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'deepspeed')))\n"
        f"print(__import__('matplotlib').get_backend())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env
    )
    assert result.returncode == 0, result.stderr
    modules_loaded, _ = result.stdout.strip().splitlines()[-2:]
    assert modules_loaded == "[]"
    assert (tmp_path / "out" / "report.html").exists()
