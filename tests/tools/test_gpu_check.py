"""tools/gpu_check.py runs end to end on the CPU with tiny shapes, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ancre.kernels import triton_unavailable
from tests.conftest import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(triton_unavailable() is not None, reason=str(triton_unavailable())),
]


def test_the_gpu_check_writes_every_section(tmp_path, subprocess_env):
    out = tmp_path / "report.md"
    env = {**subprocess_env, "TRITON_INTERPRET": "1"}
    result = subprocess.run(
        [sys.executable, "tools/gpu_check.py", "--small", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = out.read_text()
    for section in ("## pytest -m gpu", "## Fused mix against the reference",
                    "## tools/bench_mix.py", "## tools/bench_step.py (none recompute)",
                    "## tools/bench_step.py (blocks recompute)"):  # fmt: skip
        assert section in report
    rows = [line for line in report.splitlines() if line.startswith("| L=2 D=16 | triton |")]
    errors = [float(cell) for cell in rows[0].strip("|").split("|")[2:]]
    assert all(error < 0.05 for error in errors)  # bf16 against the fp32 truth
    assert "traffic model" in report and "failed: nothing" in report
