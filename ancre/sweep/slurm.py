"""A sweep as one SLURM array job: one task per run, each started by launch/slurm.sbatch."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from ancre.sweep.expand import Sweep


def slurm_array_script(
    sweep: Sweep, sweep_file: str, nodes: int = 1, gpus_per_node: int = 8
) -> str:
    """An sbatch script with one array task per run, each started by launch/slurm.sbatch.

    Args:
        sweep: The sweep.
        sweep_file: The sweep file (named in the script's comments).
        nodes: Nodes per run.
        gpus_per_node: GPUs (processes) per node.

    Returns:
        The script's text.
    """
    cases = "\n".join(
        f"    {i}) args=({_quoted(run.train_args())}) ;;  # {run.name}"
        for i, run in enumerate(sweep.runs)
    )
    logs = sweep.folder / "logs"
    return f"""#!/usr/bin/env bash
# Sweep {sweep.name} ({sweep_file}): {len(sweep.runs)} run(s), one SLURM array task each.
# Submit from the repository root:   sbatch {sweep.folder / "sweep.sbatch"}
# Unfinished runs resume from their last checkpoint when resubmitted (finished ones stop
# at once). When every task is done:   ancre sweep {sweep_file} --summary
#SBATCH --job-name=ancre-{sweep.name}
#SBATCH --array=0-{len(sweep.runs) - 1}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={gpus_per_node}
#SBATCH --output={logs}/%x-%A_%a.out
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:?submit with sbatch}}"
case ${{SLURM_ARRAY_TASK_ID:?not an array task}} in
{cases}
    *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;
esac
export GPUS_PER_NODE=${{GPUS_PER_NODE:-{gpus_per_node}}}
exec bash launch/slurm.sbatch "${{args[@]}}"
"""


def _quoted(words: Iterable[str]) -> str:
    return " ".join(shlex.quote(word) for word in words)
