"""Shared fixtures: the repository root, a tokenizer of the sample corpus, subprocess env."""  # noqa: E501

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels run on the CPU through its interpreter, which must be chosen before
    # any kernel is defined: the CPU tests check them against the reference this way.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from ancre.data.tokenizer import Tokenizer
from ancre.train.threads import affinity_cores
from tests.helpers.training import REPO, SAMPLE, sample_tokenizer_at  # noqa: F401 (REPO, SAMPLE: shared)

# The rule of ancre/train/threads.py for the suite: the cores shared among the pytest
# workers, so parallel workers (and the training processes they start) never
# oversubscribe the machine. Pinned, so reference and resumed runs use the same count.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = str(max(1, affinity_cores() // WORKERS))
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or THREADS))


# The modules that take longest (a minute or more on two cores), longest first. Parallel
# workers take whole modules in collection order, so these start first and no worker is
# left running one of them alone at the end.
LONGEST_FIRST = (
    "tests/launch/test_multinode.py",
    "tests/train/test_resume.py",
    "tests/train/test_eight_ranks.py",
    "tests/train/test_training.py",
    "tests/launch/test_documented_commands.py",
    "tests/train/test_resume_kinds.py",
    "tests/train/test_reshard.py",
    "tests/test_sweep.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Puts the modules of :data:`LONGEST_FIRST` first, in that order (stable otherwise)."""

    def rank(item: pytest.Item) -> int:
        module = Path(str(item.fspath)).relative_to(REPO).as_posix()
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def sample_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """A 512-piece unigram tokenizer trained on the bundled sample corpus."""
    return sample_tokenizer_at(tmp_path_factory.mktemp("tokenizer") / "sample.model")


@pytest.fixture(scope="session")
def subprocess_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for `ancre` subprocesses: CPU DeepSpeed, offline wandb, no launcher."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    env.setdefault("OMP_NUM_THREADS", THREADS)
    env.update(
        DS_ACCELERATOR="cpu",
        WANDB_MODE="offline",
        PYTHONUNBUFFERED="1",
        MPLCONFIGDIR=str(tmp_path_factory.mktemp("mpl")),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env
