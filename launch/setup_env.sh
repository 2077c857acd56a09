# Sourced by launch/quickstart.sh and tests/run.sh: gets a Python environment with ancre
# installed, installing only what is missing.
#
#   source launch/setup_env.sh [EXTRAS]     e.g. EXTRAS=dev
#
# - Uses the active virtual environment, or creates and activates .venv in the repo.
# - Installs torch first (torch==2.13.0 unless a torch is already installed), then the
#   package pinned to that torch, so pip never swaps in a CUDA build of several GB.
# - Sets DS_ACCELERATOR=cpu for DeepSpeed when there is no GPU, and then builds DeepSpeed's
#   CPU communication op once per environment (about 40 s on two cores; cached by torch,
#   rebuilt for another virtual environment), which the first run would otherwise build.

ancre_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ancre_extras=${1:-}

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "ancre needs Python >= 3.10; found: $(python3 --version 2>&1)" >&2
    return 1
fi

if [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x "$ancre_repo/.venv/bin/python" ]; then
        echo "[setup] creating a virtual environment in $ancre_repo/.venv"
        python3 -m venv "$ancre_repo/.venv" || return 1
    fi
    # shellcheck disable=SC1091
    source "$ancre_repo/.venv/bin/activate"
fi

ancre_stamp="$VIRTUAL_ENV/.ancre-installed${ancre_extras:+-$ancre_extras}"
ancre_want=$(sha256sum <"$ancre_repo/pyproject.toml" | cut -d' ' -f1)
ancre_have=$(cat "$ancre_stamp" 2>/dev/null || true)
if [ -z "$ancre_extras" ] && [ "$ancre_have" != "$ancre_want" ]; then
    # an install with extras (dev, gpu) holds the base install too
    ancre_have=$(cat "$VIRTUAL_ENV"/.ancre-installed-* 2>/dev/null | grep -xF "$ancre_want" | head -n 1 || true)
fi
if [ "$ancre_have" != "$ancre_want" ]; then
    if ! python -c 'import torch' 2>/dev/null; then
        echo "[setup] installing torch==2.13.0"
        python -m pip install -q "torch==2.13.0" || return 1
    fi
    ancre_constraints=$(mktemp)
    python -c 'from importlib.metadata import version; print("torch==" + version("torch"))' \
        >"$ancre_constraints"
    echo "[setup] installing ancre${ancre_extras:+[$ancre_extras]} (keeping $(cat "$ancre_constraints"))"
    python -m pip install -q -c "$ancre_constraints" -e "$ancre_repo${ancre_extras:+[$ancre_extras]}" \
        || { rm -f "$ancre_constraints"; return 1; }
    rm -f "$ancre_constraints"
    echo "$ancre_want" >"$ancre_stamp"
fi

# Without CUDA, DeepSpeed runs on the CPU; a DS_ACCELERATOR already set is kept (and
# spares the torch import that asks).
if [ -z "${DS_ACCELERATOR:-}" ] \
    && ! python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    export DS_ACCELERATOR=cpu
fi

if [ "${DS_ACCELERATOR:-}" = cpu ]; then
    # builds it only when the cache holds none for this environment (a few seconds else)
    if python -c 'import sys; from ancre.train.engine.group import build_cpu_comm_op as b; sys.exit(0 if b() else 3)' 2>/dev/null; then
        echo "[setup] built DeepSpeed's CPU communication op for this environment (once)"
    elif [ $? -ne 3 ]; then
        echo "[setup] could not build DeepSpeed's CPU communication op now; the first run will try again" >&2
    fi
fi
