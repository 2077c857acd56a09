"""tools/bench_generate.py runs, checks cached against uncached tokens, and prints ratios."""

import subprocess
import sys

from tests.conftest import REPO


def test_bench_generate_prints_rates_and_the_ratio(subprocess_env):
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/bench_generate.py"), "--presets", "tiny",
         "--vocab-size", "512", "--prompt-len", "8", "--new-tokens", "4", "--repeats", "1"],
        env=subprocess_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.strip().startswith("tiny KV cache") for line in lines)
    assert any(line.strip().startswith("tiny no cache") for line in lines)
    assert any("cache / no cache:" in line and line.endswith("x") for line in lines)
