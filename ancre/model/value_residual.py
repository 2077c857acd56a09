"""Value residual learning: every block's attention values mixed with the first block's.

ResFormer (Zhou et al., "Value Residual Learning", arXiv 2410.17897) gives the attention
of every block n after the first the values ``V_n' = l1 V_1 + l2 V_n``, where V_1 are the
first block's values of the same positions (``model.value_residual``). It is the value
trick of the modded-nanogpt speedrun. It mixes inside attention and leaves the residual
stream alone, so it is orthogonal to the connection matrix P and combines with every
``topology.kind``: a ``model`` key, not a kind.

ancre learns ``(l1, l2)`` per block, starting at (0.5, 0.5) as ResFormer's learnable
variant and the speedrun do; V_1 is not detached, so the first block's value projection
learns from every block that reads it. A model with it does not start as the plain
network (the mix acts from step 0), so a stock Llama is not imported under it.

With grouped-query attention the mix is over the G key/value heads, before they are
repeated for the query heads and before a decoding cache stores them, so a cache holds
the mixed values and decoding needs V_1 of the new positions only.
"""

from __future__ import annotations

import torch
from torch import nn

START = (0.5, 0.5)
"""(l1, l2) at initialisation: ResFormer's learnable variant, and the speedrun's."""


class FirstValues:
    """The first block's values of one forward pass, read by the blocks after it.

    A forward pass makes one and hands it to every block; the first block writes into it.
    A block recomputed in the backward (activation checkpointing) writes or reads the
    same values again.

    Attributes:
        values: (B, G, T, K) V_1 of the positions of this pass, or None before block 0.
    """

    def __init__(self, values: torch.Tensor | None = None) -> None:
        self.values = values


class ValueMix(nn.Module):
    """The attention values of one block under value residual learning.

    Attributes:
        first: This is the first block: it writes its values, and mixes nothing.
        weights: (2,) fp32 (l1, l2) of a later block, or None for the first.
    """

    def __init__(self, first: bool) -> None:
        super().__init__()
        self.first = first
        self.weights = None if first else nn.Parameter(torch.tensor(START, dtype=torch.float32))

    def forward(self, values: torch.Tensor, carrier: FirstValues) -> torch.Tensor:
        """The values (B, G, T, K) the block attends with.

        Its own in the first block (which writes them into ``carrier``), ``l1 V_1 + l2 V_n``
        after it.
        """
        if self.first:
            carrier.values = values
            return values
        if carrier.values is None:
            raise RuntimeError("value residual: a later block ran before the first block")
        l1, l2 = self.weights.to(values.dtype)
        return l1 * carrier.values + l2 * values  # (B, G, T, K)

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return "first block" if self.first else "l1 V_1 + l2 V_n"
