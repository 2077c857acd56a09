"""The commands the README documents, typed as written, in a fresh copy of the repository.

The copy holds the files git tracks and the new ones it does not ignore (what a clone of
this tree would hold); it uses the virtual environment the tests run in, so nothing is
installed (setup_env.sh sees that ancre is installed for this pyproject.toml).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ancre.run_folder import RunFolder
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SMALL = ["train.steps=6", "train.warmup_steps=1", "eval.tokens=512", "data.seq_len=64",
         "checkpoint.topology_every=3"]  # fmt: skip


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A copy of the repository's files, as a fresh clone would have them."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
        capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    root = tmp_path_factory.mktemp("clone") / "ancre"
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


@pytest.fixture(scope="module")
def env(subprocess_env) -> dict[str, str]:
    """The test environment with its virtual environment active, as after `source activate`."""
    venv = Path(sys.prefix)
    return {
        **subprocess_env, "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv / 'bin'}{os.pathsep}{subprocess_env['PATH']}",
    }  # fmt: skip


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_quickstart_with_overrides_then_the_readme_commands(clone, env):
    result = shell(f"./launch/quickstart.sh {' '.join(SMALL)}", clone, env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "built successfully" not in result.stdout
    assert "ancre viz runs/quickstart --out viz/quickstart" in result.stdout  # next steps
    run = RunFolder(clone / "runs/quickstart")
    latest = run.latest()
    assert latest is not None and latest.name == "step_00000006"
    again = shell(f"./launch/quickstart.sh {' '.join(SMALL)}", clone, env)
    assert again.returncode == 0 and "is complete (step 6); nothing to do" in again.stderr
    for command in (
        f"ancre train configs/quickstart.yaml topology.kind=cascaded run.name=baseline "
        f"{' '.join(SMALL)}",
        f"ancre eval {latest.relative_to(clone)}",
        f"ancre convert {latest.relative_to(clone)} exported/",
        "python -c \"import ancre; model = ancre.load_pretrained('exported')\"",
        "ancre viz runs/quickstart --out viz/ --compare runs/baseline --baseline baseline",
        f"launch/train.sh --procs 2 configs/quickstart.yaml run.name=two {' '.join(SMALL)}",
    ):
        result = shell(command, clone, env)
        assert result.returncode == 0, command + "\n" + result.stderr[-3000:]
    assert (clone / "exported/model.safetensors").is_file() and (
        clone / "viz/report.html"
    ).is_file()


def test_the_test_script_takes_pytest_arguments(clone, env):
    serial = "ANCRE_TEST_WORKERS=1 ./tests/run.sh -q -p no:cacheprovider tests/test_atomic.py"
    result = shell(serial, clone, env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
    default = {k: v for k, v in env.items() if k != "ANCRE_TEST_WORKERS"}
    parallel = shell("./tests/run.sh -q -p no:cacheprovider -k atomic tests/test_atomic.py",
                     clone, default)  # fmt: skip
    workers = len(os.sched_getaffinity(0)) + 1  # a core each, and one more
    assert parallel.returncode == 0 and f"-n {workers} --dist loadscope" in parallel.stdout
