"""The parts of a Llama decoder block, in reading order: norm, rotary, attention, MLP.

Shapes: B batch, T sequence, D hidden size, H heads, K head size (D = H * K),
F intermediate size.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ancre.kernels.attention import Attention, DocumentMask, sdpa_attention
from ancre.kernels.reference import accumulation_dtype
from ancre.model.value_residual import FirstValues, ValueMix


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned gain, computed in at least fp32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalises the last dimension; returns x's dtype."""
        wide = x.to(accumulation_dtype(x.dtype))  # (B, T, D)
        normed = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Cos/sin tables of rotary position embeddings (not saved: they are derived)."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)  # (K/2,)
        angles = torch.outer(torch.arange(max_seq_len).float(), inv_freq)  # (T_max, K/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the (T, K/2) cos and sin tables of the first seq_len positions."""
        if seq_len > self.cos.shape[0]:
            raise ValueError(
                f"sequence of {seq_len} tokens is longer than model.max_seq_len={self.cos.shape[0]}"
            )
        return self.cos[:seq_len], self.sin[:seq_len]

    def at(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (B, 1, T, K/2) cos and sin tables of each sequence's own positions (B, T)."""
        if positions.numel() and int(positions.max()) >= self.cos.shape[0]:
            raise ValueError(
                f"position {int(positions.max())} is past model.max_seq_len={self.cos.shape[0]}"
            )
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates pairs (x[..., :K/2], x[..., K/2:]) of a (B, H, T, K) tensor by position."""
    x1, x2 = x.to(accumulation_dtype(x.dtype)).chunk(2, dim=-1)  # (B, H, T, K/2) each
    rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)  # (B, H, T, K)
    return rotated.to(x.dtype)


class KeyValueCache(Protocol):
    """One block's keys and values of the positions seen so far (``ancre.generate.cache``).

    Attributes:
        mask: (B, 1, T, S) booleans: which of the S cached keys each new query may read
            (earlier positions of its own sequence, not padding).
    """

    mask: torch.Tensor

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stores the new positions' (B, H, T, K) keys and values; returns all S of them."""
        ...


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with rotary embeddings, grouped-query when asked.

    ``attend`` is the attention kernel chosen at build (``ancre.kernels.attention``):
    it maps (B, H, T, K) queries, keys and values to (B, H, T, K). With G key and value
    heads (G < H), each serves H / G consecutive query heads, as in Llama 2-3: the keys
    and values (and a decoding cache) have G heads, repeated to H for the kernel.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        attend: Attention = sdpa_attention,
        num_kv_heads: int | None = None,
        value_mix: ValueMix | None = None,
    ) -> None:
        super().__init__()
        self.attend = attend
        self.value_mix = value_mix
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = hidden_size // num_heads
        kv_size = self.num_kv_heads * self.head_dim
        self.wq = nn.Linear(hidden_size, hidden_size, bias=False)
        self.wk = nn.Linear(hidden_size, kv_size, bias=False)
        self.wv = nn.Linear(hidden_size, kv_size, bias=False)
        self.wo = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        documents: DocumentMask | None = None,
        cache: KeyValueCache | None = None,
        first_values: FirstValues | None = None,
        key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attends each position to itself and the positions before it.

        With ``documents`` (packed windows of several documents), only to those of its own
        document. With a cache, ``x`` holds only the new positions: their keys and values
        join the cached ones, and the queries read those through the cache's mask. Under
        value residual learning (``value_mix``), ``first_values`` carries the first
        block's values to the later ones (``ancre.model.value_residual``). With
        ``key_value`` (multiway dense connections, ``ancre.model.multiway``) the keys
        and values are projected from those two (B, T, D) inputs, the queries from ``x``.
        """
        b, t, d = x.shape
        x_key, x_value = (x, x) if key_value is None else key_value
        q = self.wq(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, K)
        k = self.wk(x_key).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B,G,T,K)
        v = self.wv(x_value).view(b, t, self.num_kv_heads, self.head_dim)  # (B, T, G, K)
        v = v.transpose(1, 2)  # (B, G, T, K)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if self.value_mix is not None:
            if first_values is None:
                raise ValueError("value residual attention needs the pass's FirstValues")
            v = self.value_mix(v, first_values)  # (B, G, T, K)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, G, S, K) each
        group = self.num_heads // self.num_kv_heads
        if group > 1:  # each key and value head serves `group` consecutive query heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if cache is None:
            out = self.attend(q, k, v, documents)  # (B, H, T, K)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=cache.mask)  # (B, H, T, K)
        return self.wo(out.transpose(1, 2).reshape(b, t, d))  # (B, T, D)


class SwiGLU(nn.Module):
    """The Llama MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps (B, T, D) to (B, T, D) through a (B, T, F) gated hidden layer."""
        return self.down(F.silu(self.gate(x)) * self.up(x))
