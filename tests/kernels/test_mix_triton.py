"""The fused Triton mix, row by row, against the spec: forward, backward, dP, determinism.

The row-by-row kernels (``mix_triton.start_pass``) at every depth; the grouped kernels
that ``topology.backend=triton`` takes at depth are held to these in
tests/kernels/test_grouped_triton.py.

On a machine without a GPU these run under Triton's interpreter (tests/conftest.py
sets TRITON_INTERPRET=1), with sizes that are not multiples of the kernel's block.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ancre.config import load_config
from ancre.kernels import select_mix, triton_unavailable
from ancre.kernels.reference import spec_backend
from ancre.model import build_model
from ancre.model.topology import AncreTopology
from tests.helpers.training import records, train_args, train_run

mix_triton = pytest.importorskip("ancre.kernels.mix_triton", reason="triton is not installed")

pytestmark = pytest.mark.skipif(triton_unavailable() is not None, reason=str(triton_unavailable()))

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (batch, tokens, hidden): 35,465 elements per state spans two interpreter programs,
# the second one partly masked; the others are small and odd.
SHAPES = [(5, 41, 173), (1, 3, 7)]


class Halve(nn.Module):
    """A block that adds no rounding of its own: y = h / 2 is exact in any dtype."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return 0.5 * h


def stack(num_layers: int, hidden: int, dtype: torch.dtype, linear: bool) -> nn.ModuleList:
    torch.manual_seed(0)
    if not linear:
        return nn.ModuleList(Halve() for _ in range(num_layers))
    blocks = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(num_layers))
    for block in blocks:
        nn.init.normal_(block.weight, std=hidden**-0.5)
    return blocks.to(DEVICE, dtype)


def run(backend, num_layers: int, shape, dtype: torch.dtype, linear: bool = True):
    """Output and the gradients of h0, the logits and the blocks, for one backend."""
    blocks = stack(num_layers, shape[-1], dtype, linear)
    topology = AncreTopology(num_layers, backend, temperature=0.5).to(DEVICE)
    with torch.no_grad():
        torch.manual_seed(1)
        topology.logits.normal_()
    torch.manual_seed(2)
    h0 = torch.randn(shape, device=DEVICE).to(dtype).requires_grad_(True)
    target = torch.randn(shape, device=DEVICE, dtype=torch.float32)
    out = topology(blocks, h0)[-1]
    loss = ((out.float() - target) ** 2).mean()
    loss.backward()
    grads = [h0.grad, topology.logits.grad, *(p.grad for p in blocks.parameters())]
    return out.detach(), [g for g in grads if g is not None]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("num_layers", [1, 2, 8, 24])
def test_fp32_matches_the_reference(num_layers, shape):
    if num_layers == 24 and shape == SHAPES[0] and DEVICE == "cpu":
        shape = (3, 41, 173)  # keep the interpreter quick at L = 24
    triton_backend = mix_triton.start_pass
    out, grads = run(triton_backend, num_layers, shape, torch.float32)
    ref_out, ref_grads = run(spec_backend, num_layers, shape, torch.float32)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    assert len(grads) == len(ref_grads)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def error(got: torch.Tensor, truth: torch.Tensor) -> float:
    """Largest deviation from the truth, relative to the truth's largest magnitude."""
    return float((got.float() - truth).abs().max() / truth.abs().max())


@pytest.mark.parametrize("num_layers", [2, 8, 24])
def test_bf16_is_as_accurate_as_the_reference(num_layers):
    """bf16 states, fp32 accumulation: both backends round the same sums (in another
    order), so the fused kernel must be as close to the fp32 truth as the reference is
    (within 1.5x its error, and under 2% of the largest value). The blocks add no
    rounding of their own."""
    triton_backend = mix_triton.start_pass
    shape = (3, 41, 173)
    out, grads = run(triton_backend, num_layers, shape, torch.bfloat16, linear=False)
    ref_out, ref_grads = run(spec_backend, num_layers, shape, torch.bfloat16, linear=False)
    truth_out, truth_grads = run(spec_backend, num_layers, shape, torch.float32, linear=False)
    assert out.dtype == torch.bfloat16
    assert grads[0].dtype == torch.bfloat16 and grads[1].dtype == torch.float32
    pairs = [(out, ref_out, truth_out), *zip(grads, ref_grads, truth_grads, strict=True)]
    for got, ref, truth in pairs:
        assert error(got, truth) <= max(1.5 * error(ref, truth), 1e-3)
        assert error(got, truth) < 2e-2


def test_topology_gradient_is_deterministic():
    triton_backend = mix_triton.start_pass
    first = run(triton_backend, 8, SHAPES[0], torch.float32)[1][1]
    second = run(triton_backend, 8, SHAPES[0], torch.float32)[1][1]
    assert torch.equal(first, second)


def test_triton_asked_for_where_it_cannot_run_fails_at_build(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: triton can run")
    with pytest.raises(
        ValueError, match="topology.backend=triton cannot run here: there is no CUDA"
    ):
        select_mix("triton")
    assert select_mix("auto")[0] == "reference"


def model_loss_and_grads(backend: str, form: str, *overrides: str):
    """The tiny model's loss and gradients with random logits and gates, on one backend."""
    torch.manual_seed(0)
    config = load_config(
        None, [f"topology.backend={backend}", "data.seq_len=32", f"topology.form={form}",
               *overrides],
    )  # fmt: skip
    model = build_model(config, 97).to(DEVICE)
    with torch.no_grad():
        model.topology.logits.normal_()
        if model.topology.gates is not None:
            model.topology.gates.normal_()
    tokens = torch.randint(0, 97, (2, 33), generator=torch.Generator().manual_seed(1))
    loss = model(tokens[:, :-1].to(DEVICE), tokens[:, 1:].to(DEVICE))
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters()}


def assert_fused_matches_reference(form: str, *overrides: str) -> None:
    loss, grads = model_loss_and_grads("reference", form, *overrides)
    fused_loss, fused_grads = model_loss_and_grads("triton", form, *overrides)
    assert fused_loss == pytest.approx(loss, rel=1e-6)
    for name, want in grads.items():
        torch.testing.assert_close(fused_grads[name], want, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("form", ["additive", "replace", "gated"])
def test_transformer_with_the_fused_mix_matches_the_reference(form):
    """Every form runs through the fused mix as its weights W (negative for replace)."""
    assert_fused_matches_reference(form)


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [0, 3])
def test_deepspeed_training_with_the_fused_mix(
    zero_stage, tmp_path, subprocess_env, sample_tokenizer
):
    finals = {}
    for backend in ("reference", "triton"):
        args = train_args(
            tmp_path, backend, sample_tokenizer.path, "train.steps=6",
            "train.global_batch_size=4", f"train.zero_stage={zero_stage}", "eval.every=0",
            "checkpoint.every=0", "checkpoint.topology_every=20", f"topology.backend={backend}",
        )  # fmt: skip
        result = train_run(*args, env=subprocess_env)
        assert f"mix: {backend} (topology.backend={backend})" in result.stderr
        finals[backend] = records(tmp_path / backend)
    for ref, fused in zip(finals["reference"], finals["triton"], strict=True):
        for key in ("loss", "val_loss", "grad_norm"):
            if key in ref:
                assert fused[key] == pytest.approx(ref[key], rel=1e-4), key


def test_a_state_that_is_not_16_byte_aligned_takes_the_unhinted_kernel():
    mix_forward, states_aligned = mix_triton.mix_forward, mix_triton.states_aligned
    n = 5 * 41 * 173
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(3)
        y = torch.randn(n, device=DEVICE).to(dtype)
        aligned = torch.randn(n, device=DEVICE).to(dtype)
        shifted = torch.randn(n + 1, device=DEVICE).to(dtype)[1:]  # 2 or 4 bytes off
        assert states_aligned([aligned]) and not states_aligned([aligned, shifted])
        weights = torch.tensor([0.25, 0.75], device=DEVICE)
        expected = (y.float() + 0.25 * aligned.float() + 0.75 * shifted.float()).to(dtype)
        torch.testing.assert_close(mix_forward(y, [aligned, shifted], weights), expected)
