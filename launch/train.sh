#!/usr/bin/env bash
# One machine: every local GPU through torchrun, or N CPU processes when there is none.
#
#   launch/train.sh [--procs N] CONFIG.yaml [MORE.yaml ...] [key=value ...]
#   launch/train.sh configs/quickstart.yaml train.steps=50
#   launch/train.sh --procs 2 configs/quickstart.yaml            # 2 CPU processes (gloo)
#
# --procs N: processes to start (default: the number of GPUs, or 1 without a GPU).
set -euo pipefail
ancre_launch_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ancre_usage="launch/train.sh [--procs N] CONFIG.yaml [MORE.yaml ...] [key=value ...]"
# shellcheck source=launch/common.sh
source "$ancre_launch_dir/common.sh"

procs=""
while [ $# -gt 0 ]; do
    case $1 in
        --procs) [ $# -ge 2 ] || ancre_die "--procs needs a number"; procs=$2; shift 2 ;;
        --procs=*) procs=${1#*=}; shift ;;
        -h | --help) echo "usage: $ancre_usage"; exit 0 ;;
        *) break ;;
    esac
done
ancre_check_settings "$@"
ancre_python_env

gpus=$(ancre_gpu_count)
if [ "$gpus" -eq 0 ]; then
    export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}
fi
procs=${procs:-$((gpus > 0 ? gpus : 1))}
case $procs in '' | *[!0-9]* | 0) ancre_die "--procs must be a positive number, not '$procs'" ;; esac
if [ "$gpus" -gt 0 ] && [ "$procs" -gt "$gpus" ]; then
    ancre_die "--procs $procs is more than the $gpus GPU(s) of this machine"
fi

ancre_exec "$ANCRE_PYTHON" -m ancre.train.torchrun --standalone --nproc_per_node "$procs" \
    "${ancre_torchrun_signals[@]}" -m ancre.cli train "$@"
