#!/usr/bin/env bash
# Installs what is missing, then trains a tiny Ancre model on the bundled sample corpus
# (on the CPU when there is no GPU) and prints its run folder and learned topology.
#
#   ./launch/quickstart.sh [key=value ...]     e.g. train.steps=50
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/setup_env.sh
echo "[quickstart] ancre train configs/quickstart.yaml $*"
ancre train configs/quickstart.yaml "$@"
