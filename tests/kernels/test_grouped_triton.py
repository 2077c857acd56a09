"""The fused mix in groups (ancre/kernels/grouped_triton.py) against the row-by-row spec.

Without a GPU these run under Triton's interpreter (tests/conftest.py), on states of
35,465 elements: two interpreter programs, the second partly masked.
"""

from __future__ import annotations

import pytest
import torch

from ancre.kernels import triton_unavailable
from ancre.kernels.reference import spec_backend
from tests.kernels.test_mix_triton import assert_fused_matches_reference

grouped_triton = pytest.importorskip("ancre.kernels.grouped_triton", reason="no triton")
mix_triton = pytest.importorskip("ancre.kernels.mix_triton", reason="no triton")

pytestmark = pytest.mark.skipif(triton_unavailable() is not None, reason=str(triton_unavailable()))

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPE = (5, 41, 173)


def run(backend, num_layers: int, dtype: torch.dtype, weights_grad: bool = True):
    """Every state and the gradients of h_0, the block outputs and W, for one backend.

    The blocks are exact in any dtype (y_j = h_j / 2 + b_j / 4 is computed in fp32 and
    rounded once), and every state enters the loss, so each has an incoming gradient.
    """
    torch.manual_seed(0)
    weights = torch.randn(num_layers, num_layers + 1, device=DEVICE).tril()
    weights.requires_grad_(weights_grad)
    h0 = torch.randn(SHAPE, device=DEVICE).to(dtype).requires_grad_(True)
    bias = [torch.randn(SHAPE, device=DEVICE).to(dtype).requires_grad_(True)
            for _ in range(num_layers)]  # fmt: skip
    mixer = backend(weights)
    states = [h0]
    for j in range(num_layers):
        y = (states[-1].float() * 0.5 + bias[j].float() * 0.25).to(dtype)
        states.append(mixer(j, y, states))
    loss = sum((s.float() * (i + 1) * 0.1).sum() for i, s in enumerate(states[1:]))
    inputs = [h0, *bias] + ([weights] if weights_grad else [])
    return [s.detach() for s in states], list(torch.autograd.grad(loss, inputs))


def grouped(group: int):
    return lambda weights: grouped_triton.start_pass(weights, group)


@pytest.mark.parametrize("num_layers", [5, 13])
def test_every_group_size_matches_the_spec_in_fp32(num_layers):
    for weights_grad in (True, False):
        want_states, want_grads = run(spec_backend, num_layers, torch.float32, weights_grad)
        for group in (1, 2, 3, 4, 8):
            states, grads = run(grouped(group), num_layers, torch.float32, weights_grad)
            for got, want in zip([*states, *grads], [*want_states, *want_grads], strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def error(got: torch.Tensor, truth: torch.Tensor) -> float:
    """Largest deviation from the truth, relative to the truth's largest magnitude."""
    return float((got.float() - truth.float()).abs().max() / truth.float().abs().max())


@pytest.mark.parametrize("group", [3, 4])
def test_bf16_is_as_accurate_as_the_row_by_row_kernels(group):
    """fp32 partial rows round nothing: as close to the fp32 truth as the row-by-row fused
    kernels (within 1.5x their error, or 1e-3), which tests/kernels/test_mix_triton.py holds
    to the spec."""
    truth = run(spec_backend, 13, torch.float32)
    rows = run(mix_triton.start_pass, 13, torch.bfloat16)
    got = run(grouped(group), 13, torch.bfloat16)
    flat = [[*states, *grads] for states, grads in (truth, rows, got)]
    for want, plain, fused in zip(*flat, strict=True):
        assert fused.dtype == plain.dtype
        assert error(fused, want) <= max(1.5 * error(plain, want), 1e-3)


def test_results_are_identical_run_to_run():
    first = run(grouped(4), 13, torch.float32)
    second = run(grouped(4), 13, torch.float32)
    for a, b in zip([*first[0], *first[1]], [*second[0], *second[1]], strict=True):
        assert torch.equal(a, b)


def test_the_traffic_model_chooses_groups_at_depth_and_rows_when_shallow():
    weights = torch.rand(6, 7)
    assert grouped_triton.start_pass(weights).__code__ is mix_triton.start_pass(
        weights
    ).__code__  # fmt: skip
    deep = torch.rand(24, 25)
    cheaper, group = grouped_triton.grouped_is_cheaper(24, 2)
    assert cheaper and 2 <= group <= grouped_triton.MAX_GROUP
    assert grouped_triton.start_pass(deep).__code__ is grouped(group)(deep).__code__
    with pytest.raises(ValueError, match="1 to 16 rows"):
        grouped_triton.start_pass(deep, 17)


@pytest.mark.parametrize("form", ["additive", "replace", "gated"])
def test_a_deep_transformer_with_the_fused_mix_matches_the_reference(form):
    """16 blocks: topology.backend=triton takes the grouped kernels (G = 4), every form."""
    assert grouped_triton.grouped_is_cheaper(16, 2) == (True, 4)
    assert_fused_matches_reference(form, "model.num_layers=16")
