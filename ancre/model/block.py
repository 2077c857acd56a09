"""A standard pre-norm Llama decoder block, with its own two inner residuals."""

from __future__ import annotations

import torch
from torch import nn

from ancre.kernels.attention import Attention, DocumentMask, sdpa_attention
from ancre.model.laurel import LaurelResidual
from ancre.model.layers import CausalSelfAttention, KeyValueCache, RMSNorm, SwiGLU
from ancre.model.multiway import Multiway
from ancre.model.presets import ModelShape
from ancre.model.value_residual import FirstValues, ValueMix


class DecoderBlock(nn.Module):
    """``x + Attn(norm x)``, then ``+ MLP(norm .)``: y_j = Block_j(h_j) in docs/method.md.

    With ``laurel`` set in the shape, each of the two residual connections is a
    :class:`~ancre.model.laurel.LaurelResidual` (``attn_residual``, ``mlp_residual``);
    else both are the plain sum and those attributes are None. With
    ``value_residual``, the attention of block ``index`` > 0 mixes the first block's
    values into its own (``ancre.model.value_residual``). Built ``multiway`` (the
    topology feeds it four inputs, ``ancre.model.multiway``), its keys and values read
    inputs of their own through norms of their own (``key_norm``, ``value_norm``, None
    otherwise), as in MUDDFormer; ``attn_norm`` then normalises the query input.
    """

    def __init__(
        self,
        shape: ModelShape,
        attend: Attention = sdpa_attention,
        index: int = 0,
        multiway: bool = False,
    ) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(shape.hidden_size, shape.norm_eps)
        self.key_norm: RMSNorm | None = None
        self.value_norm: RMSNorm | None = None
        if multiway:
            self.key_norm = RMSNorm(shape.hidden_size, shape.norm_eps)
            self.value_norm = RMSNorm(shape.hidden_size, shape.norm_eps)
        value_mix = ValueMix(first=index == 0) if shape.value_residual else None
        self.attn = CausalSelfAttention(
            shape.hidden_size, shape.num_heads, attend, shape.num_kv_heads, value_mix
        )  # fmt: skip
        self.mlp_norm = RMSNorm(shape.hidden_size, shape.norm_eps)
        self.mlp = SwiGLU(shape.hidden_size, shape.intermediate_size)
        self.attn_residual: LaurelResidual | None = None
        self.mlp_residual: LaurelResidual | None = None
        if shape.laurel != "none":
            width, variant, rank = shape.hidden_size, shape.laurel, shape.laurel_rank
            self.attn_residual = LaurelResidual(width, variant, rank)
            self.mlp_residual = LaurelResidual(width, variant, rank)

    def forward(
        self,
        x: torch.Tensor | Multiway,
        rope: tuple[torch.Tensor, torch.Tensor],
        documents: DocumentMask | None = None,
        cache: KeyValueCache | None = None,
        first_values: FirstValues | None = None,
    ) -> torch.Tensor:
        """Maps the block's input state (B, T, D) to its output y (B, T, D).

        ``x`` is one state, or a multiway block's four inputs (:class:`Multiway`; y then
        adds the updates to their residual). ``documents`` keeps attention within each
        document of packed windows; ``cache`` holds the keys and values of earlier
        positions when decoding; ``first_values`` carries the first block's values under
        value residual learning.
        """
        query = key = value = x
        if isinstance(x, Multiway):
            if self.key_norm is None:
                raise ValueError("a block built without multiway inputs was given four")
            query, key, value, x = x
        key_value = None
        if self.key_norm is not None and self.value_norm is not None:
            key_value = (self.key_norm(key), self.value_norm(value))  # 2 x (B, T, D)
        normed = self.attn_norm(query)  # (B, T, D)
        update = self.attn(normed, rope, documents, cache, first_values, key_value)  # (B, T, D)
        x = x + update if self.attn_residual is None else self.attn_residual(x, update)
        update = self.mlp(self.mlp_norm(x))  # (B, T, D)
        return x + update if self.mlp_residual is None else self.mlp_residual(x, update)
