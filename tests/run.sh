#!/usr/bin/env bash
# Installs what is missing (the package with its dev extra), then runs the test suite.
#
#   ./tests/run.sh [pytest arguments ...]      e.g. -m "not slow", -k topology
#
# Tests run in ANCRE_TEST_WORKERS parallel workers (default: one per core and one more,
# which works while the others wait on processes they started; 1 runs them in this
# process), grouped by module so that a module's trained runs are shared.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/setup_env.sh dev
export WANDB_MODE=offline
export MPLCONFIGDIR=${MPLCONFIGDIR:-$(mktemp -d)}
cores=$(python -c "import os; print(len(os.sched_getaffinity(0)))")  # nproc reads OMP_NUM_THREADS
workers=${ANCRE_TEST_WORKERS:-$((cores + 1))}
parallel=()
[ "$workers" = 1 ] || parallel=(-n "$workers" --dist loadscope)
echo "[tests] python -m pytest ${parallel[*]} $*"
python -m pytest "${parallel[@]}" "$@"
