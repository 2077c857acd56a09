#!/usr/bin/env bash
# Installs what is missing, then trains a tiny Ancre model on the bundled sample corpus
# (on the CPU when there is no GPU) and prints its run folder and learned topology.
#
#   ./launch/quickstart.sh [key=value ...]     e.g. train.steps=50
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/setup_env.sh ""  # no extras (not this script's arguments)
echo "[quickstart] ancre train configs/quickstart.yaml $*"
ancre train configs/quickstart.yaml "$@"
run_dir=runs/quickstart
cat <<EOF_NEXT

[quickstart] done: the run folder is $run_dir. Next:
  source ${VIRTUAL_ENV:-.venv}/bin/activate
      (the environment ancre is installed in)
  ancre viz $run_dir --out viz/quickstart
      (figures and viz/quickstart/report.html)
  ancre train configs/quickstart.yaml topology.kind=cascaded run.name=cascaded
  ancre viz $run_dir --out viz/compare --compare runs/cascaded --baseline cascaded
      (a plain Llama beside it, and how many steps each needs)
  ./launch/quickstart.sh train.steps=400
      (continues this run up to step 400)
EOF_NEXT
