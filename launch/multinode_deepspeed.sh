#!/usr/bin/env bash
# Several machines through DeepSpeed's launcher, started once from one machine.
#
#   launch/multinode_deepspeed.sh HOSTFILE CONFIG.yaml [MORE.yaml ...] [key=value ...]
#   launch/multinode_deepspeed.sh launch/hostfile.example configs/paper/60m.yaml
#
# HOSTFILE lists "HOSTNAME slots=N" lines (see launch/hostfile.example). DeepSpeed's
# default launcher (pdsh) then runs the job on every host over ssh (even for one host):
#   - pdsh must be installed on this machine, and `ssh HOST` must work without a
#     password from here to every host (DeepSpeed checks the first one);
#   - every host needs the repository, its virtual environment and the data at the
#     same paths as here (the run folder on a shared file system);
#   - only PYTHON*, NCCL*, UCX* variables travel to the hosts: put others (such as
#     DS_ACCELERATOR, HF_HOME, WANDB_*) as KEY=VALUE lines in ./.deepspeed_env or
#     ~/.deepspeed_env.
# Environment: MASTER_ADDR (default: the first host), MASTER_PORT (default 29500),
# DS_LAUNCHER (pdsh, openmpi, mvapich, slurm, ...; default pdsh).
# Stopping: SIGTERM, SIGINT or SIGUSR1 to this script reaches every training process
# (here, or through pdsh on the hosts); they write a checkpoint and exit 5.
# Without ssh: set NODE_RANK (0..hosts-1, the line of this node in HOSTFILE) and run
# the script on every node yourself (DeepSpeed's --no_ssh); the same HOSTFILE and
# MASTER_ADDR everywhere. This also runs a one-host hostfile on this machine.
set -euo pipefail
ancre_launch_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ancre_usage="launch/multinode_deepspeed.sh HOSTFILE CONFIG.yaml [MORE.yaml ...] [key=value ...]"
# shellcheck source=launch/common.sh
source "$ancre_launch_dir/common.sh"

case ${1:-} in -h | --help) echo "usage: $ancre_usage"; exit 0 ;; esac
[ $# -ge 1 ] || ancre_die "no hostfile given; usage: $ancre_usage"
hostfile=$1
shift
[ -f "$hostfile" ] || ancre_die "hostfile not found: $hostfile (see launch/hostfile.example)"
hosts=$(grep -v '^[[:space:]]*\(#\|$\)' "$hostfile" | awk '{print $1}')
[ -n "$hosts" ] || ancre_die "hostfile $hostfile names no host (lines: HOSTNAME slots=N)"
if grep -v '^[[:space:]]*\(#\|$\)' "$hostfile" | grep -qv '^[^[:space:]]\+[[:space:]]\+slots=[0-9]\+[[:space:]]*$'; then
    ancre_die "hostfile $hostfile: every line must read 'HOSTNAME slots=N'"
fi
ancre_check_settings "$@"
launcher=${DS_LAUNCHER:-pdsh}
mode=(--launcher "$launcher")
if [ -n "${NODE_RANK:-}" ]; then
    mode=(--no_ssh --node_rank "$NODE_RANK")
elif [ "$launcher" = pdsh ] && ! command -v pdsh >/dev/null; then
    ancre_die "pdsh is not installed (apt-get install pdsh) and DeepSpeed's default launcher \
needs it; set DS_LAUNCHER to another launcher, or NODE_RANK to run on each node without ssh"
fi
ancre_python_env
command -v deepspeed >/dev/null || ancre_die "the deepspeed command is not on PATH"
if [ "$(ancre_gpu_count)" -eq 0 ]; then
    export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}
fi
master_addr=${MASTER_ADDR:-${hosts%%$'\n'*}}  # the first host (no pipe: SIGPIPE under pipefail)

# DeepSpeed's launcher passes only SIGINT and SIGTERM on, and kills the workers 30 s
# later: stop signals go to the training processes directly instead.
# shellcheck disable=SC2034  # read by ancre_forward_stop
ancre_hosts=$hosts
ancre_supervise ancre_forward_stop deepspeed --hostfile "$hostfile" "${mode[@]}" \
    --master_addr "$master_addr" --master_port "${MASTER_PORT:-29500}" \
    --module ancre.cli train "$@"
exit "$ancre_status"
