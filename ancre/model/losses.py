"""The training objective over next-token targets: cross-entropy, and the z-loss.

Both run in fp32 (or wider) whatever the dtype of the logits, over the target tokens
that count (targets not equal to -100, ``ancre.data.loader.IGNORE_INDEX``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ancre.kernels.reference import accumulation_dtype

IGNORED = -100
"""PyTorch's default ignore_index: a target position that counts for nothing."""


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of next-token logits against targets.

    Args:
        logits: (B, T, V) in any float dtype.
        targets: (B, T) token ids; -100 marks a position left out.
        reduction: ``mean`` over counted positions, or ``sum``.

    Returns:
        A 0-d tensor, fp32 or wider.
    """
    return F.cross_entropy(
        logits.to(accumulation_dtype(logits.dtype)).flatten(0, 1),  # (B*T, V)
        targets.flatten(),  # (B*T,)
        reduction=reduction,
    )


def z_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean(logsumexp(logits)^2) over the counted positions (PaLM's z-loss, unscaled).

    It pulls the softmax normaliser log Z towards 0, which keeps the logits from
    drifting (PaLM, Chowdhery et al. 2022; OLMo-core), in fp32 also under bf16.

    Args:
        logits: (B, T, V) in any float dtype.
        targets: (B, T); positions with -100 do not count.

    Returns:
        A 0-d tensor, fp32 or wider (0 when no position counts).
    """
    lse = torch.logsumexp(logits.to(accumulation_dtype(logits.dtype)), dim=-1)  # (B, T)
    counted = targets != IGNORED  # (B, T)
    return (lse.square() * counted).sum() / counted.sum().clamp(min=1)
