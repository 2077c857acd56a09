"""Per-block statistics equal what forward hooks see; mHC starts as the plain residual."""

from __future__ import annotations

import contextlib

import pytest
import torch

from ancre.model.depth_stats import BlockStats, DepthRecorder, recording
from tests.helpers.zoo_models import VOCAB, ZOO, capture, perturb, tiny_model

KINDS = {
    "cascaded": (), "ancre": (), "uniform": (), "ancre-replace": ("topology.form=replace",),
    "ancre-gated": ("topology.form=gated",), **{name: () for name in ZOO},
}  # fmt: skip


def stats_of(name: str, tokens: torch.Tensor, trained: bool = True) -> tuple[BlockStats, object]:
    kind = name.split("-")[0] if name.startswith("ancre-") else name
    model = tiny_model(kind, layers=4, extra=KINDS[name])
    if trained:
        perturb(model)
    topology, recorder = model.topology, DepthRecorder()
    per_token = topology.recording() if getattr(topology, "dynamic", False) else None
    with torch.no_grad(), recording(model, recorder), per_token or contextlib.nullcontext():
        model(tokens)
    return recorder.stats(topology.share_reads()), model


def test_statistics_equal_what_hooks_see():
    tokens = torch.randint(0, VOCAB, (2, 9))
    stats, model = stats_of("ancre", tokens)
    seen = capture(model, tokens)
    states = [*seen.inputs, seen.final]  # h_0 .. h_{L-1}, h_L
    for got, state in zip(stats.state_rms, states, strict=True):
        assert got == pytest.approx(float(state.pow(2).mean().sqrt()), rel=1e-5)
    for j, (h, y) in enumerate(zip(seen.inputs, seen.outputs, strict=True)):
        assert stats.update_ratio[j] == pytest.approx(float((y - h).norm() / h.norm()), rel=1e-5)
        written = states[j + 1]
        rounding = (written.bfloat16().float() - written).norm() / (y - h).norm()
        assert stats.bf16_rounding[j] == pytest.approx(float(rounding), rel=1e-4)


def test_final_share_of_the_plain_residual_is_each_terms_projection():
    tokens = torch.randint(0, VOCAB, (2, 9))
    stats, model = stats_of("cascaded", tokens)
    seen = capture(model, tokens)
    final = seen.final
    terms = [seen.embeddings] + [y - h for h, y in zip(seen.inputs, seen.outputs, strict=True)]
    for got, term in zip(stats.final_share, terms, strict=True):
        assert got == pytest.approx(float((term * final).sum() / final.pow(2).sum()), rel=1e-4)


@pytest.mark.parametrize("name", KINDS)
def test_final_shares_sum_to_one_for_every_kind(name):
    stats, _ = stats_of(name, torch.randint(0, VOCAB, (2, 9)))
    assert len(stats.final_share) == 5 and len(stats.update_ratio) == 4
    assert sum(stats.final_share) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("dynamic", [False, True])
def test_mhc_at_step_0_is_the_plain_residual_network(dynamic):
    # the final norm reads the sum of 3 equal streams: RMSNorm(3 h) = RMSNorm(h) up to its
    # eps, which a tiny eps takes out of the comparison of the logits
    eps = "model.norm_eps=1e-12"
    extra = ("topology.streams=3", f"topology.dynamic={str(dynamic).lower()}", eps)
    mhc, cascaded = tiny_model("mhc", extra=extra), tiny_model("cascaded", extra=(eps,))
    tokens = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(mhc(tokens), cascaded(tokens), atol=1e-5, rtol=1e-5)
    seen_mhc, seen_plain = capture(mhc, tokens), capture(cascaded, tokens)
    for ours, plain in zip(seen_mhc.inputs, seen_plain.inputs, strict=True):
        torch.testing.assert_close(ours, plain, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(seen_mhc.final / 3, seen_plain.final, atol=1e-6, rtol=1e-5)
    pre = torch.sigmoid(mhc.topology.static_pre.detach())
    torch.testing.assert_close(pre.sum(1), torch.ones(4))
    assert bool((pre.max(1).values > pre.min(1).values).all())  # not 1/n: streams can part


def test_static_mhc_streams_part_after_one_step():
    """Equal H_pre weights would give every stream the same gradient for ever."""
    model = tiny_model("mhc", extra=("topology.streams=3",))
    tokens = torch.randint(0, VOCAB, (2, 9))
    model(tokens, tokens).backward()
    grad = model.topology.static_post.grad[:-1]  # (L-1, n): the last block feeds the sum
    assert bool((grad.max(1).values - grad.min(1).values > 0).all())
