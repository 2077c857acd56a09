# shellcheck shell=bash disable=SC2154  # ancre_usage, ancre_launch_dir: set by the caller
# Sourced by the launch scripts: messages, argument checks and the Python environment.
# Not meant to be run on its own.

# Prints an error and exits.
ancre_die() {
    echo "[launch] error: $*" >&2
    exit 2
}

# Prints a command (shell-quoted, so it can be copied) and runs it in place of the shell.
ancre_exec() {
    echo "[launch] $(printf '%q ' "$@")" >&2
    exec "$@"
}

# Checks the training arguments: at least one config, every CONFIG.yaml an existing file.
ancre_check_settings() {
    [ $# -ge 1 ] || ancre_die "no config given; usage: $ancre_usage"
    local item
    for item in "$@"; do
        case $item in
            *=*) ;;
            -*) ancre_die "unknown option $item; usage: $ancre_usage" ;;
            *) [ -f "$item" ] || ancre_die "config file not found: $item" ;;
        esac
    done
}

# Uses the Python on PATH when it can import ancre; else sources launch/setup_env.sh,
# which activates (or creates) the repository's virtual environment.
ancre_python_env() {
    if ! "${PYTHON:-python}" -c 'import ancre' 2>/dev/null; then
        # shellcheck source=launch/setup_env.sh
        source "$ancre_launch_dir/setup_env.sh" || ancre_die "could not set up the Python environment"
    fi
    ANCRE_PYTHON=${PYTHON:-python}
}

# Number of CUDA devices visible here (0 without a GPU).
ancre_gpu_count() {
    "$ANCRE_PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0
}

# torchrun options that forward every stop signal to every worker and give the workers
# time to write their checkpoint (ANCRE_STOP_TIMEOUT seconds, default 900) before
# torchrun kills them. A worker stops at the next step boundary, writes a checkpoint
# and exits 5 (see docs/launch.md, "Stopping and preemption").
# shellcheck disable=SC2034,SC2054  # used by the scripts; the commas are torchrun's
ancre_torchrun_signals=(--signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1
    --shutdown-timeout "${ANCRE_STOP_TIMEOUT:-900}")

# Runs a command (printed first, shell-quoted) in the background and waits for it. While it
# runs, SIGTERM, SIGINT and SIGUSR1 to this script call "$1 SIGNAL" (a function that passes
# the stop request on; ancre_child holds the command's pid). Afterwards ancre_status holds
# the command's exit status and ancre_stop_signal the first signal received ("" if none).
ancre_supervise() {
    local forward=$1 sig
    shift
    echo "[launch] $(printf '%q ' "$@")" >&2
    "$@" &
    ancre_child=$!
    ancre_stop_signal=""
    for sig in TERM INT USR1; do
        # shellcheck disable=SC2064  # expand sig and forward now
        trap "ancre_stop_signal=\${ancre_stop_signal:-$sig}; $forward $sig" "$sig"
    done
    while :; do
        ancre_status=0
        # shellcheck disable=SC2034  # read by the caller
        wait "$ancre_child" || ancre_status=$?
        kill -0 "$ancre_child" 2>/dev/null || break  # a signal interrupted the wait
    done
    trap - TERM INT USR1
}

# The training processes among the descendants of a process (pid $1): those whose command
# line holds "ancre.cli" and a rank argument, not the launchers between them.
ancre_training_processes() {
    local children child
    children=$(pgrep -P "$1" 2>/dev/null || true)
    for child in $children; do
        if tr '\0' ' ' <"/proc/$child/cmdline" 2>/dev/null | grep -q 'ancre\.cli --local_rank='; then
            echo "$child"
        fi
        ancre_training_processes "$child"
    done
}

# Sends a stop signal ($1) to the training processes under the supervised launcher
# (ancre_child) and, when none runs on this machine (DeepSpeed over pdsh), to this user's
# training processes on the hosts listed in ancre_hosts, through pdsh.
ancre_forward_stop() {
    local sig=$1 hosts=${ancre_hosts:-} local_pids
    local_pids=$(ancre_training_processes "$ancre_child")
    if [ -n "$local_pids" ]; then
        echo "[launch] SIG$sig: asking the training processes ($(echo "$local_pids" | tr '\n' ' ')) to checkpoint and stop" >&2
        # shellcheck disable=SC2086  # one pid per word
        kill -s "$sig" $local_pids 2>/dev/null || true
    elif [ -n "$hosts" ] && command -v pdsh >/dev/null; then
        echo "[launch] SIG$sig: asking the training processes on $(echo "$hosts" | tr '\n' ' ')to checkpoint and stop" >&2
        pdsh -w "$(echo "$hosts" | paste -sd, -)" pkill "-$sig" -u "$(id -un)" -f 'ancre\.cli --local_rank=' || true
    fi
}
