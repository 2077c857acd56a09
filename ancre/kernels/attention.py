"""Attention kernels, chosen once when a model is built (``model.attention``).

- ``sdpa``: torch's scaled_dot_product_attention with the causal flag (it runs flash
  or cuDNN kernels itself on recent GPUs); any device and dtype.
- ``flash_attn``: the flash-attn package's ``flash_attn_func`` (CUDA, fp16/bf16);
  an optional extra that builds from source (``pip install 'ancre[gpu]'``).
- ``auto``: flash_attn on CUDA when it imports, else sdpa.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
import torch.nn.functional as F

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(q, k, v), each (B, H, T, K) -> (B, H, T, K), causal."""


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention with torch's SDPA (flash or cuDNN kernels on recent GPUs).

    Args:
        q: Queries (B, H, T, K).
        k: Keys (B, H, T, K).
        v: Values (B, H, T, K).

    Returns:
        (B, H, T, K).
    """
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention with flash-attn, which takes (B, T, H, K) in fp16 or bf16."""
    from flash_attn import flash_attn_func  # optional extra, checked by select_attention

    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
    return out.transpose(1, 2)  # (B, H, T, K)


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
