"""Implementations of the topology mix; the backend is chosen once, when a model is built.

Every backend computes :func:`ancre.kernels.reference.mix` and keeps the parameters
and the checkpoint layout unchanged, so switching backend never touches a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ancre.kernels import reference

MixFn = Callable[[torch.Tensor, Sequence[torch.Tensor], torch.Tensor], torch.Tensor]
"""(y (..., D), states [j+1 x (..., D)], weights (j+1,)) -> h_{j+1} (..., D)."""

_BACKENDS: dict[str, MixFn] = {"reference": reference.mix}


def select_mix(backend: str) -> tuple[str, MixFn]:
    """Chooses the mix implementation for a ``topology.backend`` setting.

    Args:
        backend: ``auto`` (the fastest available here) or the name of a backend.

    Returns:
        The name of the chosen backend and its function.

    Raises:
        ValueError: The named backend does not exist in this build.
    """
    name = "reference" if backend == "auto" else backend
    if name not in _BACKENDS:
        raise ValueError(
            f"topology.backend={backend!r} is not available; available: auto, "
            + ", ".join(_BACKENDS)
        )
    return name, _BACKENDS[name]
