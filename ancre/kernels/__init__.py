"""Implementations of the topology mix; the backend is chosen once, when a model is built.

A backend turns the (L, L+1) connection matrix of one forward pass into a *mixer*,
called once per block as ``mixer(j, y_j, [h_0, ..., h_j]) -> h_{j+1}``. Every backend
computes :func:`ancre.kernels.reference.mix` and has no parameters of its own, so
switching backend never changes a checkpoint.

- ``reference``: plain PyTorch, any device: the grouped forward and column-scheme
  backward of ``ancre.kernels.grouped`` (a few BLAS calls per block), which computes
  the executable spec ``ancre.kernels.reference.mix`` up to the order of fp32 sums.
- ``triton``: fused Triton kernels (``ancre.kernels.mix_triton`` row by row, and in
  groups where that moves less, ``ancre.kernels.grouped_triton``), on CUDA, or on the
  CPU under ``TRITON_INTERPRET=1``; needs the ``triton`` package (``pip install
  ancre[gpu]``).
- ``auto``: triton on a CUDA machine where it imports, else reference.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence

import torch

from ancre.kernels.grouped import grouped_backend

Mixer = Callable[[int, torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]
"""(j, y_j (..., D), [h_0 .. h_j]) -> h_{j+1} (..., D), for one forward pass."""
MixBackend = Callable[[torch.Tensor], Mixer]
"""The (L, L+1) connection matrix of a forward pass -> its mixer."""

BACKENDS = ("auto", "reference", "triton")


def reference_backend(weights: torch.Tensor) -> Mixer:
    """The mixer of the plain-PyTorch backend for one forward pass (grouped rows)."""
    return grouped_backend(weights)


def triton_unavailable() -> str | None:
    """Why the triton backend cannot run here, or None when it can."""
    if importlib.util.find_spec("triton") is None:
        return "the triton package is not installed (pip install 'ancre[gpu]')"
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        return "there is no CUDA GPU (on a CPU, Triton runs only under TRITON_INTERPRET=1)"
    return None


def select_mix(backend: str) -> tuple[str, MixBackend]:
    """Chooses the mix implementation for a ``topology.backend`` setting.

    Args:
        backend: ``auto``, ``reference`` or ``triton``.

    Returns:
        The name of the chosen backend and the backend.

    Raises:
        ValueError: The backend is unknown, or ``triton`` was asked for where it cannot
            run (the message says why and what to do).
    """
    if backend not in BACKENDS:
        raise ValueError(f"topology.backend={backend!r} is not available; allowed: {BACKENDS}")
    why_not = triton_unavailable()
    if backend == "reference" or (backend == "auto" and (why_not or not torch.cuda.is_available())):
        return "reference", reference_backend
    if why_not:
        raise ValueError(
            f"topology.backend=triton cannot run here: {why_not}; use auto or reference"
        )
    # Imported here, behind the check above: triton is an optional dependency, and
    # TRITON_INTERPRET must be set before its kernels are defined.
    from ancre.kernels import grouped_triton

    return "triton", grouped_triton.start_pass
