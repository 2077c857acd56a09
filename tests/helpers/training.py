"""Starting real training runs from tests: one config, one launcher, one metrics reader.

Every test that trains merges ``configs/quickstart.yaml`` and ``tests/assets/tiny_run.yaml``
(the tiny preset on the sample corpus, 8 fp32 steps) and adds what it varies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from ancre.cli import main
from ancre.data.sources import find_shards, iter_documents
from ancre.data.tokenizer import Tokenizer, train_tokenizer
from ancre.run_folder import RunFolder
from tests.helpers.processes import run_in_process, run_ranks

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
QUICKSTART = REPO / "configs" / "quickstart.yaml"
TINY_RUN = REPO / "tests" / "assets" / "tiny_run.yaml"


def sample_tokenizer_at(path: Path) -> Tokenizer:
    """The tests' tokenizer: 512 unigram pieces of the sample corpus (one thread, so the
    same model on every machine)."""
    documents = iter_documents(find_shards(str(SAMPLE), "train"), "text", Counter())
    return train_tokenizer(documents, path, vocab_size=512)


def train_args(out: Path, name: str, tokenizer: Path | str, *extra: str) -> list[str]:
    """Arguments of ``ancre train`` for the tests' tiny run in ``out/name``.

    Args:
        out: ``run.out_dir``.
        name: ``run.name``.
        tokenizer: A sentencepiece model, or ``null`` to train one in the run.
        *extra: More ``key=value`` overrides (they win).
    """
    return [
        str(QUICKSTART), str(TINY_RUN), f"run.out_dir={out}", f"run.name={name}",
        f"data.path={SAMPLE}", f"data.tokenizer={tokenizer}", *extra,
    ]  # fmt: skip


def launcher(processes: int = 1) -> list[str]:
    """The command that starts ``ancre`` in one process, or in several through torchrun."""
    if processes == 1:
        return [sys.executable, "-m", "ancre.cli"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", "-m", "ancre.cli"]  # fmt: skip


def run_ancre(
    *args: str, env: dict[str, str], processes: int = 1, timeout: float = 600, cwd=None
) -> subprocess.CompletedProcess:
    """Runs ``ancre ARGS`` and waits for it: in this process when it is one process (what
    a subprocess would print is captured the same way), else on forked ranks.

    Args:
        *args: The command line after ``ancre``.
        env: The process environment of the command.
        processes: 1 runs it here; more start that many ranks (:func:`run_ranks`).
        timeout: Seconds the ranks may take.
        cwd: Working folder of the command (None: this one).
    """
    if processes == 1:
        return run_in_process(list(args), env=env, cwd=cwd)
    assert cwd is None, "ranks run in this folder"
    return run_ranks(list(args), env=env, processes=processes, timeout=timeout)


def train_run(*args: str, env: dict[str, str], processes: int = 1) -> subprocess.CompletedProcess:
    """``ancre train ARGS``, asserting that it succeeded (the log tail when not)."""
    result = run_ancre("train", *args, env=env, processes=processes)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def records(run_dir: Path, timed: bool = False) -> list[dict]:
    """metrics.jsonl of a run; without the wall-clock field unless ``timed``."""
    lines = RunFolder(run_dir).metrics_file.read_text().splitlines()
    return [
        {k: v for k, v in json.loads(line).items() if timed or k != "tokens_per_s"}
        for line in lines
    ]


def cli_error(capsys, *args: str) -> str:
    """Runs ``ancre ARGS`` in this process and returns its one error line.

    Only for input the command refuses before it starts anything (a config, model,
    data or tokenizer check): it must end with exit code 2, no traceback, and exactly
    one ``ancre COMMAND: error:`` line.
    """
    capsys.readouterr()  # what earlier output left
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith(f"ancre {args[0]}: error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest`` names, or None."""
    return RunFolder(run_dir).latest()
