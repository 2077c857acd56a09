"""The topology mix in plain PyTorch: the executable specification of every fused kernel.

For block j with output y_j and the states h_0 .. h_j before it (docs/method.md)::

    h_{j+1} = y_j + sum_{i=0..j} P[j, i] * h_i

The sum accumulates in fp32 (fp64 for fp64 inputs) whatever the dtype of the states,
and the result takes the dtype of y_j. Autograd derives the backward pass of
:func:`mix`: dh_i += P[j, i] * g and dP[j, i] = <h_i, g>, with g the gradient of h_{j+1}.

:func:`mix` is the specification; :class:`LeanMix` computes the same values and
gradients, bit for bit, for the reference backend. Autograd would keep the fp32 copy of
every bf16 state for dP (about 1.15x cascaded's saved bytes at 60m); ``LeanMix`` keeps
only the states, which the model holds anyway, and redoes the casts in backward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype to accumulate a dtype's values in: at least fp32."""
    return torch.promote_types(dtype, torch.float32)


def mix(y: torch.Tensor, states: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Adds the weighted sum of earlier states to a block's output.

    Args:
        y: Output of block j, shape (..., D).
        states: The j+1 states h_0 .. h_j, each shaped like y.
        weights: Row j of the connection matrix, shape (j+1,).

    Returns:
        h_{j+1}, shaped and typed like y.
    """
    if weights.shape != (len(states),):
        raise ValueError(f"{len(states)} states need {len(states)} weights, got {weights.shape}")
    wide = accumulation_dtype(y.dtype)
    out = y.to(wide)  # (..., D) accumulator
    for weight, state in zip(weights.to(wide).unbind(0), states, strict=True):
        out = out + weight * state.to(wide)  # (..., D)
    return out.to(y.dtype)


class LeanMix(torch.autograd.Function):
    """:func:`mix` as one autograd node that saves nothing the states do not already hold."""

    @staticmethod
    def forward(ctx, y, weights, *states):  # noqa: D102
        ctx.save_for_backward(weights, *states)
        ctx.y_dtype = y.dtype
        with torch.no_grad():
            return mix(y, states, weights)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        weights, *states = ctx.saved_tensors
        wide = accumulation_dtype(ctx.y_dtype)
        g = grad_out.to(wide)  # (..., D): the gradient of the fp32 accumulator
        w = weights.to(wide)
        grad_states = [(w[i] * g).to(state.dtype) for i, state in enumerate(states)]
        grad_weights = None
        if ctx.needs_input_grad[1]:
            grad_weights = torch.stack([(state.to(wide) * g).sum() for state in states])
            grad_weights = grad_weights.to(weights.dtype)
        return g.to(ctx.y_dtype), grad_weights, *grad_states


def lean_mix(
    y: torch.Tensor, states: Sequence[torch.Tensor], weights: torch.Tensor
) -> torch.Tensor:
    """:func:`mix` through :class:`LeanMix` (same values and gradients, less saved memory)."""
    if weights.shape != (len(states),):
        raise ValueError(f"{len(states)} states need {len(states)} weights, got {weights.shape}")
    return LeanMix.apply(y, weights, *states)


def spec_backend(
    weights: torch.Tensor,
) -> Callable[[int, torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]:
    """The mixer of the spec, row by row through :class:`LeanMix`, for one forward pass.

    What the fused and grouped backends are checked against: every row its own sum over
    its states, in order.
    """

    def mixer(j: int, y: torch.Tensor, states: Sequence[torch.Tensor]) -> torch.Tensor:
        return lean_mix(y, states, weights[j, : j + 1])

    return mixer
