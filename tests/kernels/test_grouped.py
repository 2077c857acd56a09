"""The grouped mix (ancre/kernels/grouped.py) against the executable spec, every group size."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from ancre.kernels import reference_backend
from ancre.kernels.grouped import GroupedPass, grouped_backend
from ancre.kernels.reference import mix
from ancre.kernels.traffic import best_group, grouped_passes, row_passes


def spec_mixer(weights):
    return lambda j, y, states: mix(y, states, weights[j, : j + 1])


def stack(mixer, h0, ys, blocks):
    """A small stack: y_j = tanh(h_j A_j) + b_j, so gradients flow through every state."""
    states = [h0]
    for j, (block, bias) in enumerate(zip(blocks, ys, strict=True)):
        states.append(mixer(j, torch.tanh(states[-1] @ block) + bias, states))
    return states


def values_and_gradients(make_mixer, num_layers, dtype, weights_grad=True, seed=0):
    torch.manual_seed(seed)
    weights = torch.randn(num_layers, num_layers + 1).tril().to(torch.float32)
    weights.requires_grad_(weights_grad)
    h0 = torch.randn(2, 3, 8).to(dtype).requires_grad_(True)
    ys = [torch.randn(2, 3, 8).to(dtype).requires_grad_(True) for _ in range(num_layers)]
    blocks = [(torch.randn(8, 8) / 3).to(dtype) for _ in range(num_layers)]
    states = stack(make_mixer(weights), h0, ys, blocks)
    # every state enters the loss: each gets an incoming gradient besides the mix terms
    loss = sum((s.float() * (i + 1) * 0.1).sum() for i, s in enumerate(states[1:]))
    inputs = [h0, *ys] + ([weights] if weights_grad else [])
    return states, torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("num_layers", [1, 2, 5, 9])
def test_every_group_size_gives_the_specs_values_and_gradients_in_fp64(num_layers):
    want_states, want_grads = values_and_gradients(spec_mixer, num_layers, torch.float64)
    for group in range(1, num_layers + 2):
        for weights_grad in (True, False):
            states, grads = values_and_gradients(
                lambda w, g=group: grouped_backend(w, g), num_layers, torch.float64, weights_grad
            )  # fmt: skip
            for got, want in zip(states, want_states, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
            for got, want in zip(grads, want_grads, strict=False):
                torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def error(got: torch.Tensor, truth: torch.Tensor) -> float:
    """Largest deviation from the truth, relative to the truth's largest magnitude."""
    return float((got.detach().double() - truth).abs().max() / truth.abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fp32_and_bf16_are_as_accurate_as_the_spec(dtype):
    """Against the fp64 truth, the grouped sums (another order of the same fp32 additions)
    are as close as the spec's: over all states and gradients on average (within 1.2x),
    and each within 3x (the blocks compute in the same dtype, so a rounding that falls
    the other way early moves everything after it)."""
    truth = values_and_gradients(spec_mixer, 12, torch.float64)
    spec = values_and_gradients(spec_mixer, 12, dtype)
    grouped = values_and_gradients(reference_backend, 12, dtype)
    flat = [[*states, *grads] for states, grads in (truth, spec, grouped)]
    errors = [
        (error(got, want), error(plain, want))
        for want, plain, got in zip(*flat, strict=True)
        if got.dtype == plain.dtype
    ]
    assert len(errors) == len(flat[0])
    assert all(got <= max(3 * plain, 1e-6) for got, plain in errors)
    mean_got = sum(e[0] for e in errors) / len(errors)
    mean_plain = sum(e[1] for e in errors) / len(errors)
    assert mean_got <= max(1.2 * mean_plain, 1e-6)


def test_bf16_states_accumulate_in_fp32():
    # as the spec: 256 + 4 x 0.5 reaches 258 in an fp32 accumulator, stays 256 in bf16
    weights = torch.zeros(1, 5)
    weights[0, 0] = 0.5
    mixer = grouped_backend(torch.tensor([[2.0]]))
    out = mixer(0, torch.full((4,), 256.0, dtype=torch.bfloat16), [torch.ones(4).bfloat16()])
    assert out.dtype == torch.bfloat16 and torch.all(out == 258.0)


def test_results_are_identical_run_to_run():
    first = values_and_gradients(reference_backend, 9, torch.float32)
    second = values_and_gradients(reference_backend, 9, torch.float32)
    for a, b in zip([*first[0], *first[1]], [*second[0], *second[1]], strict=True):
        assert torch.equal(a, b)


def test_a_pass_is_freed_with_its_graph_and_keeps_no_copy_after_the_forward():
    """No reference cycle holds a pass (and its buffers) once the graph is gone."""
    weights = torch.rand(6, 7, requires_grad=True)
    h0 = torch.randn(4, 8, requires_grad=True)
    mixer = grouped_backend(weights)
    tape: GroupedPass = mixer.__closure__[0].cell_contents  # type: ignore[index]
    states = [h0]
    for j in range(6):
        states.append(mixer(j, states[-1] * 2, states))
    assert tape.copies is None and tape.partials is None  # let go after the last block
    states[-1].sum().backward()
    alive = weakref.ref(tape)
    del mixer, tape, states
    gc.disable()
    try:
        assert alive() is None  # freed by reference counting alone
    finally:
        gc.enable()


def test_a_block_must_see_every_earlier_state():
    mixer = grouped_backend(torch.rand(3, 4))
    with pytest.raises(ValueError, match="block 0 mixes 1 states, got 2"):
        mixer(0, torch.ones(2), [torch.ones(2), torch.ones(2)])


def test_the_traffic_model_picks_groups_near_the_root_of_the_depth():
    assert best_group(1) == 1
    for num_layers in (24, 48, 64):
        group = best_group(num_layers)
        assert 0.5 * num_layers**0.5 <= group <= 2 * num_layers**0.5
        grouped = sum(grouped_passes(num_layers, group))
        assert 1.5 * grouped < sum(row_passes(num_layers)) < sum(grouped_passes(num_layers, 1))
