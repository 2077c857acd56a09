"""The random states of a process (python, torch CPU and CUDA) as JSON-ready data.

A checkpoint stores them per process so that a resumed run draws the same random
numbers (dropout, sampling) an uninterrupted one would.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import torch


def rng_state() -> dict[str, Any]:
    """This process's random states (python, torch CPU and CUDA) as JSON-ready data."""

    def encode(state: torch.Tensor) -> str:
        return base64.b64encode(state.numpy().tobytes()).decode("ascii")

    version, internal, gauss = random.getstate()
    return {
        "python": [version, list(internal), gauss],
        "torch": encode(torch.get_rng_state()),
        "cuda": [encode(s) for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available()
        else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores the random states saved by :func:`rng_state`."""

    def decode(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(decode(state["torch"]))
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all([decode(s) for s in state["cuda"]])
