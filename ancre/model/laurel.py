"""LAuReL: a block's residual connection with learned weights and a low-rank map.

Learned Augmented Residual Layer (Menghani, Kumar and Kumar, arXiv 2411.07501, ICML
2025) generalises ``x' = f(x) + x`` to ``x' = a f(x) + g(x)``, with g linear in x. ancre
builds the paper's two variants for language models and their combination, on each of
the two residual connections inside a Llama block (attention, then MLP):

- ``rw`` (re-weighted): ``x' = a f(x) + b x``, a and b learned scalars;
- ``lr`` (low-rank): ``x' = f(x) + x + B A x``, A (r x D) and B (D x r) learned;
- ``rw_lr``: ``x' = a f(x) + b (x + B A x)``.

Every variant starts as the plain residual: a = b = 1 and B = 0 (A from the model's
normal initialisation), so step 0 computes what the plain block computes. Departures,
written down in docs/topologies.md: the paper leaves a and b unnormalised or passes them
through a softmax; ancre leaves them unnormalised (a softmax of equal logits would halve
both at step 0). Gemma 3n's ``Gemma3nTextLaurelBlock`` (transformers) is the ``lr`` map
followed by an RMSNorm, applied beside attention to the normalised input; ancre adds no
norm, so that B = 0 starts as the plain block (an RMSNorm of zero has a gradient of
1 / sqrt(eps)). ``tests/model/test_laurel.py`` holds the map to Gemma's before its norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LaurelResidual(nn.Module):
    """One residual connection ``x' = a f(x) + g(x)`` (``model.laurel``).

    Attributes:
        variant: ``rw``, ``lr`` or ``rw_lr``.
        alpha: (1,) a, the learned weight of the sub-layer's update (rw, rw_lr), else None.
        beta: (1,) b, the learned weight of the carried input (rw, rw_lr), else None.
        down: A (r, D), maps D -> r (lr, rw_lr), else None.
        up: B (D, r), maps r -> D, zero at initialisation (lr, rw_lr), else None.

    Its parameters are its own (no child modules), so that ZeRO-3's partitioned build,
    which gathers a module's own parameters around ``Module.apply``, initialises them
    all in one call of :meth:`reset_parameters`.
    """

    def __init__(self, hidden_size: int, variant: str, rank: int) -> None:
        super().__init__()
        if variant not in ("rw", "lr", "rw_lr"):
            raise ValueError(f"LAuReL variant {variant!r}; allowed: rw, lr, rw_lr")
        self.variant = variant
        weighted, low_rank = variant in ("rw", "rw_lr"), variant in ("lr", "rw_lr")
        # (1,), not 0-d: DeepSpeed broadcasts parameters as bytes, which a 0-d tensor cannot be
        self.alpha = nn.Parameter(torch.ones(1)) if weighted else None
        self.beta = nn.Parameter(torch.ones(1)) if weighted else None
        self.down = nn.Parameter(torch.empty(rank, hidden_size)) if low_rank else None
        self.up = nn.Parameter(torch.empty(hidden_size, rank)) if low_rank else None
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """Starts as the plain residual: a = b = 1, A from N(0, std), B = 0."""
        with torch.no_grad():
            for scalar in (self.alpha, self.beta):
                if scalar is not None:
                    scalar.fill_(1.0)
            if self.down is not None:
                nn.init.normal_(self.down, mean=0.0, std=std)
                self.up.zero_()

    def forward(self, x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        """Joins the input x (B, T, D) and the sub-layer's update f(x) (B, T, D)."""
        carried = x
        if self.up is not None:
            down, up = self.down.to(x.dtype), self.up.to(x.dtype)
            carried = x + F.linear(F.linear(x, down), up)  # (B, T, r) -> (B, T, D)
        if self.alpha is None:
            return update + carried
        return self.alpha.to(x.dtype) * update + self.beta.to(x.dtype) * carried

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"variant={self.variant}"
