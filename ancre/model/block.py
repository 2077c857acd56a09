"""A standard pre-norm Llama decoder block, with its own two inner residuals."""

from __future__ import annotations

import torch
from torch import nn

from ancre.kernels.attention import Attention, DocumentMask, sdpa_attention
from ancre.model.layers import CausalSelfAttention, KeyValueCache, RMSNorm, SwiGLU
from ancre.model.presets import ModelShape


class DecoderBlock(nn.Module):
    """``x + Attn(norm x)``, then ``+ MLP(norm .)``: y_j = Block_j(h_j) in docs/method.md."""

    def __init__(self, shape: ModelShape, attend: Attention = sdpa_attention) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(shape.hidden_size, shape.norm_eps)
        self.attn = CausalSelfAttention(
            shape.hidden_size, shape.num_heads, attend, shape.num_kv_heads
        )  # fmt: skip
        self.mlp_norm = RMSNorm(shape.hidden_size, shape.norm_eps)
        self.mlp = SwiGLU(shape.hidden_size, shape.intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        documents: DocumentMask | None = None,
        cache: KeyValueCache | None = None,
    ) -> torch.Tensor:
        """Maps the block's input state (B, T, D) to its output y (B, T, D).

        ``documents`` keeps attention within each document of packed windows; ``cache``
        holds the keys and values of earlier positions when decoding.
        """
        x = x + self.attn(self.attn_norm(x), rope, documents, cache)  # (B, T, D)
        return x + self.mlp(self.mlp_norm(x))  # (B, T, D)
