"""torchrun with ancre's exit codes: ``python -m ancre.train.torchrun [torchrun arguments]``.

torchrun reports any ending but success as its own failure: a stop signal that the
workers turned into a checkpoint (exit 5) becomes a ``SignalException`` traceback and
exit 1, and a survivor's "lost a peer" (exit 4) becomes exit 1 as well. This wrapper
runs torchrun's own ``main`` unchanged and maps its endings back:

- the workers' exit codes, which each worker writes into ``$ANCRE_EXIT_DIR`` as it
  exits (``ancre.cli``), or which torchrun's ``ChildFailedError`` carries;
- 4 when any worker lost a peer, else 5 when a worker stopped with a checkpoint, else
  the first code that is ancre's own (2, 3, 6), else 128 + the signal that stopped
  torchrun, or 1.

The launch scripts (launch/train.sh, launch/torchrun_multinode.sh, launch/slurm.sbatch)
start training through it. It imports nothing of ancre but the exit codes' names.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

EXIT_DIR = "ANCRE_EXIT_DIR"
"""The variable naming the folder where every worker writes ``rank_<N>.exit``."""
EXIT_LOST_PEER = 4
EXIT_STOPPED = 5
OWN_CODES = (2, 3, 6)
"""ancre's other exit codes: bad input, non-finite losses, a full disk."""


def worker_codes(folder: Path) -> list[int]:
    """The exit codes the workers wrote into ``folder`` (unreadable files left out)."""
    codes = []
    for path in sorted(folder.glob("rank_*.exit")):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if text.lstrip("-").isdigit():
            codes.append(int(text))
    return codes


def combined_code(codes: Sequence[int], fallback: int) -> int:
    """One exit code for the workers' codes (see the module).

    A stop's checkpoint is written by every worker together, so one worker's 5 means it
    is complete, even when another was killed at torchrun's shutdown timeout.

    Args:
        codes: The codes known.
        fallback: The code when the codes say nothing of ancre's.
    """
    if EXIT_LOST_PEER in codes:
        return EXIT_LOST_PEER
    if EXIT_STOPPED in codes:
        return EXIT_STOPPED
    return next((code for code in codes if code in OWN_CODES), fallback)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs torchrun with ``argv`` and returns ancre's exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    folder = Path(tempfile.mkdtemp(prefix="ancre-exit-"))
    os.environ[EXIT_DIR] = str(folder)
    try:
        try:
            torchrun(list(sys.argv[1:] if argv is None else argv))
        except SignalException as stopped:
            code = combined_code(worker_codes(folder), 128 + int(stopped.sigval))
            print(f"ancre: torchrun stopped on {stopped.sigval.name}; exit code {code}",
                  file=sys.stderr)  # fmt: skip
            return code
        except ChildFailedError as failed:
            known = worker_codes(folder)
            codes = known or [f.exitcode for f in failed.failures.values()]
            return combined_code(codes, 1)
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # made here, by this process


if __name__ == "__main__":
    sys.exit(main())
