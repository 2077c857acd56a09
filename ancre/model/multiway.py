"""The four inputs of a decoder block under multiway dense connections (``topology.kind: mudd``).

MUDDFormer (``ancre.model.topology.zoo.mudd``) feeds each block after the first a
different mix of the earlier states for the query, key and value projections of its
attention and for its residual stream. A block built ``multiway`` takes these four
(``Multiway``) or, as the first block does, one state that serves as all four.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Multiway(NamedTuple):
    """A block's four inputs, each (B, T, D).

    Attributes:
        query: What the block's query projection reads (after its attention norm).
        key: What the key projection reads (after the block's key norm).
        value: What the value projection reads (after the block's value norm).
        residual: The state the block adds its attention and MLP updates to.
    """

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    residual: torch.Tensor


def residual_of(x: torch.Tensor | Multiway) -> torch.Tensor:
    """The residual input of a block: the state itself, or the residual of four inputs."""
    return x.residual if isinstance(x, Multiway) else x
