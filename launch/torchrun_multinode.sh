#!/usr/bin/env bash
# Several machines through torchrun: run this once on every node, with the same
# NNODES and rendezvous endpoint and a different NODE_RANK.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 launch/torchrun_multinode.sh CONFIG.yaml [key=value ...]
#   launch/torchrun_multinode.sh --nnodes 2 --node-rank 1 --master-addr node0 CONFIG.yaml ...
#
# Settings (option, or environment variable):
#   --nnodes / NNODES                  number of nodes (required)
#   --node-rank / NODE_RANK            this node's rank, 0..NNODES-1 (required for static)
#   --master-addr / MASTER_ADDR        host of node 0, reachable from every node (required)
#   --master-port / MASTER_PORT        a free TCP port on that host (default 29500)
#   --nproc-per-node / NPROC_PER_NODE  processes per node (default: GPUs, or 1 without)
#   --rdzv-backend / RDZV_BACKEND      static (default: ranks follow NODE_RANK) or c10d
#                                      (elastic rendezvous at MASTER_ADDR:MASTER_PORT;
#                                      node ranks are assigned as nodes join)
#   RDZV_ID                            c10d rendezvous id (default ancre)
# Every node needs the repository and the data at the same paths (or a shared file
# system for the run folder: checkpoints are written by every process).
set -euo pipefail
ancre_launch_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ancre_usage="launch/torchrun_multinode.sh [--nnodes N] [--node-rank R] [--master-addr HOST] \
[--master-port PORT] [--nproc-per-node G] [--rdzv-backend static|c10d] CONFIG.yaml [key=value ...]"
# shellcheck source=launch/common.sh
source "$ancre_launch_dir/common.sh"

while [ $# -gt 0 ]; do
    case $1 in
        --nnodes | --node-rank | --master-addr | --master-port | --nproc-per-node | --rdzv-backend)
            [ $# -ge 2 ] || ancre_die "$1 needs a value"
            case $1 in
                --nnodes) NNODES=$2 ;;
                --node-rank) NODE_RANK=$2 ;;
                --master-addr) MASTER_ADDR=$2 ;;
                --master-port) MASTER_PORT=$2 ;;
                --nproc-per-node) NPROC_PER_NODE=$2 ;;
                --rdzv-backend) RDZV_BACKEND=$2 ;;
            esac
            shift 2
            ;;
        -h | --help) echo "usage: $ancre_usage"; exit 0 ;;
        *) break ;;
    esac
done
ancre_check_settings "$@"
backend=${RDZV_BACKEND:-static}
[ -n "${NNODES:-}" ] || ancre_die "NNODES is not set (the number of nodes; or --nnodes)"
[ -n "${MASTER_ADDR:-}" ] || ancre_die "MASTER_ADDR is not set (the host of node 0; or --master-addr)"
port=${MASTER_PORT:-29500}
ancre_python_env
gpus=$(ancre_gpu_count)
if [ "$gpus" -eq 0 ]; then
    export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}
fi
nproc=${NPROC_PER_NODE:-$((gpus > 0 ? gpus : 1))}

case $backend in
    static)
        [ -n "${NODE_RANK:-}" ] || ancre_die "NODE_RANK is not set (0..$((NNODES - 1)); or --node-rank)"
        rendezvous=(--node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "$port")
        ;;
    c10d)
        rendezvous=(--rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$port" --rdzv_id "${RDZV_ID:-ancre}")
        ;;
    *) ancre_die "RDZV_BACKEND must be static or c10d, not '$backend'" ;;
esac

ancre_exec "$ANCRE_PYTHON" -m ancre.train.torchrun --nnodes "$NNODES" --nproc_per_node "$nproc" \
    "${rendezvous[@]}" --max_restarts 0 "${ancre_torchrun_signals[@]}" -m ancre.cli train "$@"
