"""Attention kernels, chosen once when a model is built (``model.attention``).

- ``sdpa``: torch's scaled_dot_product_attention with the causal flag (it runs flash
  or cuDNN kernels itself on recent GPUs); any device and dtype.
- ``flash_attn``: the flash-attn package's ``flash_attn_func`` (CUDA, fp16/bf16);
  an optional extra that builds from source (``pip install 'ancre[gpu]'``).
- ``auto``: flash_attn on CUDA when it imports, else sdpa.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable

import torch

from ancre.model.layers import sdpa_attention

logger = logging.getLogger(__name__)

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(q, k, v), each (B, H, T, K) -> (B, H, T, K), causal."""

_logged = False


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention with flash-attn, which takes (B, T, H, K) in fp16 or bf16."""
    from flash_attn import flash_attn_func  # optional extra, checked by select_attention

    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
    return out.transpose(1, 2)  # (B, H, T, K)


def select_attention(setting: str, log: bool = True) -> tuple[str, Attention]:
    """The attention kernel for a ``model.attention`` setting; logged once per process.

    Args:
        setting: ``model.attention``.
        log: Log the choice (the first time); off for a check before the run.

    Raises:
        ValueError: flash_attn was asked for where the package is missing or there is no
            GPU; the message says how to install it.
    """
    global _logged
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
    name, attend = ("flash_attn", flash_attention) if use_flash else ("sdpa", sdpa_attention)
    if log and not _logged:
        logger.info("attention: %s (model.attention=%s)", name, setting)
        _logged = True
    return name, attend
