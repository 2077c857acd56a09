#!/usr/bin/env bash
# Installs what is missing (the package with its dev extra), then runs the test suite.
#
#   ./tests/run.sh [pytest arguments ...]      e.g. -m "not slow", -k topology
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/setup_env.sh dev
export WANDB_MODE=offline
export MPLCONFIGDIR=${MPLCONFIGDIR:-$(mktemp -d)}
echo "[tests] python -m pytest $*"
python -m pytest "$@"
