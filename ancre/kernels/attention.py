"""Attention kernels, chosen once when a model is built (``model.attention``).

- ``sdpa``: torch's scaled_dot_product_attention with the causal flag (it runs flash
  or cuDNN kernels itself on recent GPUs); any device and dtype. Documents of packed
  windows (:class:`DocumentMask`) run through a dense block-causal mask.
- ``flash_attn``: the flash-attn package's ``flash_attn_func`` (CUDA, fp16/bf16), and
  its ``flash_attn_varlen_func`` for documents; an optional extra that builds from
  source (``pip install 'ancre[gpu]'``).
- ``auto``: flash_attn on CUDA when it imports, else sdpa.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class DocumentMask:
    """Which positions of packed windows belong to one document (``data.packing: docs_masked``).

    A position attends only to itself and the earlier positions of its own document:
    attention is block-diagonal and causal. Built once per forward pass
    (``ancre.model.documents``) and read by every block's attention.

    Attributes:
        segments: (B, T) int64, the document index of each position within its row
            (non-decreasing along T).
    """

    segments: torch.Tensor
    _dense: torch.Tensor | None = field(default=None, repr=False)
    _varlen: tuple[torch.Tensor, int] | None = field(default=None, repr=False)

    def dense(self) -> torch.Tensor:
        """(B, 1, T, T) bool: query t may read key s (s <= t, same document); made once."""
        if self._dense is None:
            t = self.segments.shape[1]
            causal = torch.ones(t, t, dtype=torch.bool, device=self.segments.device).tril()
            same = self.segments[:, :, None] == self.segments[:, None, :]  # (B, T, T)
            self._dense = (same & causal).unsqueeze(1)
        return self._dense

    def varlen(self) -> tuple[torch.Tensor, int]:
        """flash-attn's varlen layout of the flattened rows, made once.

        Returns:
            The cumulative document lengths (int32, documents + 1) and the longest one.
        """
        if self._varlen is None:
            b, t = self.segments.shape
            starts = torch.ones_like(self.segments, dtype=torch.bool)  # (B, T)
            starts[:, 1:] = self.segments[:, 1:] != self.segments[:, :-1]
            first = torch.nonzero(starts.flatten()).flatten()  # starts in the flat B*T
            bounds = torch.cat([first, first.new_tensor([b * t])]).to(torch.int32)
            self._varlen = (bounds, int((bounds[1:] - bounds[:-1]).max()))
        return self._varlen


Attention = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, "DocumentMask | None"], torch.Tensor
]
"""(q, k, v, documents), each of q, k, v (B, H, T, K) -> (B, H, T, K), causal (and within
each document when ``documents`` is given)."""


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, documents: DocumentMask | None = None
) -> torch.Tensor:
    """Causal attention with torch's SDPA (flash or cuDNN kernels on recent GPUs).

    Args:
        q: Queries (B, H, T, K).
        k: Keys (B, H, T, K).
        v: Values (B, H, T, K).
        documents: Documents of packed windows: the causal mask within each (a dense
            (B, 1, T, T) mask, which SDPA runs with its memory-efficient or math kernel).

    Returns:
        (B, H, T, K).
    """
    if documents is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=documents.dense())


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, documents: DocumentMask | None = None
) -> torch.Tensor:
    """Causal attention with flash-attn, which takes (B, T, H, K) in fp16 or bf16.

    With documents, its varlen kernel runs every document of the flattened rows as its
    own causal sequence (no mask is materialised).
    """
    # optional extra, checked by select_attention
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    b, h, t, k_dim = q.shape
    if documents is None:
        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
        return out.transpose(1, 2)  # (B, H, T, K)
    bounds, longest = documents.varlen()
    flat = [x.transpose(1, 2).reshape(b * t, h, k_dim) for x in (q, k, v)]  # (B*T, H, K)
    out = flash_attn_varlen_func(*flat, bounds, bounds, longest, longest, causal=True)
    return out.view(b, t, h, k_dim).transpose(1, 2)  # (B, H, T, K)


def select_attention(setting: str) -> tuple[str, Attention]:
    """The attention kernel for a ``model.attention`` setting.

    Args:
        setting: ``model.attention``: auto, sdpa or flash_attn.

    Returns:
        The name of the chosen kernel and the kernel.

    Raises:
        ValueError: flash_attn was asked for where the package is missing or there is no
            GPU; the message says how to install it.
    """
    has_flash = importlib.util.find_spec("flash_attn") is not None
    if setting == "flash_attn" and not (has_flash and torch.cuda.is_available()):
        why = "the flash-attn package is not installed" if not has_flash else "there is no GPU"
        raise ValueError(
            f"model.attention=flash_attn cannot run here: {why}. Install it with "
            "pip install 'ancre[gpu]' (it compiles CUDA code: set MAX_JOBS), or use sdpa"
        )
    use_flash = setting == "flash_attn" or (
        setting == "auto" and has_flash and torch.cuda.is_available()
    )
    return ("flash_attn", flash_attention) if use_flash else ("sdpa", sdpa_attention)
