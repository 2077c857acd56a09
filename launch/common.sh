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
