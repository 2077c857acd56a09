"""Every Triton kernel compiled for A100 (sm_80) and H100 (sm_90) without a GPU.

The compilation runs in a subprocess without TRITON_INTERPRET (the suite's interpreter
replaces the kernels by Python functions). Every kernel of ancre/kernels is covered
through its module's ``launches()``; a kernel missing from it fails the test.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ancre.kernels import triton_unavailable
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    triton_unavailable() is not None and "not installed" in str(triton_unavailable()),
    reason="triton is not installed",
)

COMPILE = """
import json
from ancre.kernels.aot import TARGETS, jit_kernels, kernel_modules, reports
out = {"modules": {}, "reports": []}
for module in kernel_modules():
    launches = module.launches()
    out["modules"][module.__name__] = {
        "kernels": jit_kernels(module), "launched": sorted({l.name for l in launches}),
        "streams": {f"{l.name} {l.label}": sorted(set(l.streams.values())) for l in launches},
    }
    for r in reports(launches, TARGETS):
        out["reports"].append({
            "kernel": r.launch.name, "label": r.launch.label, "target": r.target,
            "spills": r.spills, "registers": r.registers, "streams": r.streams,
            "line": r.line(),
        })
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled(subprocess_env):
    env = {k: v for k, v in subprocess_env.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", COMPILE], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_kernel_is_compiled_for_both_targets_and_dtypes(compiled):
    assert compiled["modules"], "no kernel module found"
    for module, found in compiled["modules"].items():
        assert found["kernels"] == found["launched"], f"{module}: kernels without a launch spec"
    done = {(r["kernel"], r["target"], r["label"].split()[0]) for r in compiled["reports"]}
    for module in compiled["modules"].values():
        for kernel in module["kernels"]:
            for target in ("sm_80", "sm_90"):
                for dtype in ("bf16", "fp32"):
                    assert (kernel, target, dtype) in done


def test_no_kernel_spills_and_every_stream_moves_16_bytes_per_instruction(compiled):
    declared = {k: v for m in compiled["modules"].values() for k, v in m["streams"].items()}
    for report in compiled["reports"]:
        assert report["spills"] == 0 and report["registers"] > 0, report["line"]
        expected = declared[f"{report['kernel']} {report['label']}"]
        assert sorted(report["streams"]) == expected, report["line"]  # each stream is moved
        for stream, widths in report["streams"].items():
            assert widths and all(w == 16 for w in widths), f"{report['line']}: {stream} {widths}"


def test_the_report_tool_prints_one_line_per_kernel_target_and_dtype(subprocess_env):
    env = {k: v for k, v in subprocess_env.items() if k != "TRITON_INTERPRET"}
    report = [sys.executable, "tools/kernel_report.py", "--target", "sm_90"]
    result = subprocess.run(report, env=env, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("_mix_forward_kernel sm_90 bf16 regs=") for line in lines)
    assert all("spills=0" in line and "narrow_stream_ops=0" in line for line in lines)
    interpreted = {**env, "TRITON_INTERPRET": "1"}
    refused = subprocess.run(report, env=interpreted, cwd=REPO, capture_output=True, text=True)
    assert refused.returncode != 0 and "unset TRITON_INTERPRET" in refused.stderr
