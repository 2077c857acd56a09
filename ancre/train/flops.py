"""Model FLOPs per token and MFU (model FLOPs utilisation).

FLOPs per training token follow the PaLM accounting (Chowdhery et al., 2022, app. B):

    6 * N  +  12 * L * D * T

N is the number of parameters of every matrix multiply (all weights except the input
embedding, whose lookup is not a matmul; the output head counts); 6 = 2 for the
forward multiply-add and 4 for the backward. The attention term counts the QK^T and
AV products of L layers at width D over a sequence of T tokens, forward and backward,
without discounting the causal mask. The topology mix (L(L+1)/2 weighted adds per
token and feature) is memory traffic, not matrix work, and is left out. Activation
recomputation is not counted either: MFU measures useful work.

MFU = achieved model FLOP/s / (peak dense bf16 FLOP/s per device x devices).
"""

from __future__ import annotations

import torch

from ancre.model import ModelShape, Transformer, whole_numel

PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "H800": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "RTX 4090": 165e12,
}
"""Nominal dense bf16 tensor-core peaks (no sparsity) by device-name fragment."""


def flops_per_token(model: Transformer, seq_len: int) -> float:
    """Training FLOPs per token: 6 N + 12 L D T (see the module docstring)."""
    matmul_params = model.num_parameters() - whole_numel(model.embed.weight)
    shape = model.shape
    return 6.0 * matmul_params + 12.0 * shape.num_layers * shape.hidden_size * seq_len


def shape_flops_per_token(shape: ModelShape, seq_len: int) -> float:
    """:func:`flops_per_token` from a shape alone, without building the model.

    Counts the blocks' matrices (4 D^2 attention, 3 D I SwiGLU), their norms, the final
    norm and the head; the topology's few logits are left out.
    """
    d, inner, layers = shape.hidden_size, shape.intermediate_size, shape.num_layers
    matmul_params = layers * (4 * d * d + 3 * d * inner + 2 * d) + d + shape.vocab_size * d
    return 6.0 * matmul_params + 12.0 * layers * d * seq_len


def device_peak_flops(configured: float = 0.0) -> float | None:
    """Peak dense bf16 FLOP/s of this process's device.

    Returns:
        The configured value, a known GPU's nominal peak, or None (CPU and unknown
        devices: no MFU is reported).
    """
    if configured > 0:
        return configured
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def mfu(
    tokens_per_s: float, flops_per_token_: float, peak: float | None, devices: int
) -> float | None:
    """Model FLOPs utilisation over ``devices`` devices, or None without a known peak."""
    if peak is None:
        return None
    return tokens_per_s * flops_per_token_ / (peak * devices)
