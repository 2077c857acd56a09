"""The model against a plain pre-norm Llama computed step by step from its own weights."""

import math

import pytest
import torch
import torch.nn.functional as F

from ancre.config import load_config
from ancre.model import Transformer, build_model
from ancre.model.topology import AncreTopology
from tests.helpers.zoo_models import assert_causal
from tests.model.test_topology import expected_matrix

VOCAB = 97


def tiny(kind: str, layers: int = 3) -> Transformer:
    torch.manual_seed(0)
    config = load_config(
        None,
        [f"topology.kind={kind}", "topology.temperature=0.5", f"model.num_layers={layers}",
         "model.hidden_size=32", "model.intermediate_size=48", "model.num_heads=4",
         "data.seq_len=16"],
    )  # fmt: skip
    return build_model(config, VOCAB)


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding of (B, H, T, K), pairs (k, k + K/2), written out by hand."""
    t, k = x.shape[-2], x.shape[-1]
    out = torch.empty_like(x)
    for pos in range(t):
        for m in range(k // 2):
            angle = pos * theta ** (-2 * m / k)
            a, b = x[..., pos, m], x[..., pos, m + k // 2]
            out[..., pos, m] = a * math.cos(angle) - b * math.sin(angle)
            out[..., pos, m + k // 2] = b * math.cos(angle) + a * math.sin(angle)
    return out


def llama_block(model: Transformer, j: int, h: torch.Tensor) -> torch.Tensor:
    block, shape = model.blocks[j], model.shape
    b, t, d = h.shape
    heads, k = shape.num_heads, shape.head_dim
    x = rms(h, block.attn_norm.weight, shape.norm_eps)
    q, kk, v = (x @ w.weight.T for w in (block.attn.wq, block.attn.wk, block.attn.wv))
    q, kk, v = (z.view(b, t, heads, k).transpose(1, 2) for z in (q, kk, v))
    q, kk = rotate(q, shape.rope_theta), rotate(kk, shape.rope_theta)
    scores = q @ kk.transpose(-1, -2) / math.sqrt(k)
    scores = scores.masked_fill(torch.ones(t, t).triu(1).bool(), float("-inf"))
    attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
    h = h + attended @ block.attn.wo.weight.T
    x = rms(h, block.mlp_norm.weight, shape.norm_eps)
    gated = F.silu(x @ block.mlp.gate.weight.T) * (x @ block.mlp.up.weight.T)
    return h + gated @ block.mlp.down.weight.T


@torch.no_grad()
def test_cascaded_equals_plain_llama():
    model = tiny("cascaded")
    tokens = torch.randint(0, VOCAB, (2, 10))
    states = model.hidden_states(tokens)
    h = model.embed.weight[tokens]
    torch.testing.assert_close(states[0], h)
    for j in range(3):
        h = llama_block(model, j, h)
        torch.testing.assert_close(states[j + 1], h, atol=1e-5, rtol=1e-5)
    logits = rms(h, model.norm.weight, model.shape.norm_eps) @ model.head.weight.T
    torch.testing.assert_close(model(tokens), logits, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_ancre_equals_method_formula_for_given_logits():
    model = tiny("ancre", layers=4)
    model.topology.logits.normal_()
    P = expected_matrix(model.topology.logits, 4, 0.5)
    tokens = torch.randint(0, VOCAB, (2, 10))
    states = model.hidden_states(tokens)
    expected = [model.embed.weight[tokens]]
    for j in range(4):
        y = llama_block(model, j, expected[j])
        expected.append(y + sum(P[j, i] * expected[i] for i in range(j + 1)))
        torch.testing.assert_close(states[j + 1], expected[j + 1], atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("kind", ["cascaded", "ancre", "uniform"])
def test_changing_a_token_changes_no_earlier_logits(kind):
    model = tiny(kind)
    if kind == "ancre":
        model.topology.logits.normal_()
    assert_causal(model, VOCAB)


@pytest.mark.parametrize("autocast", [False, True])
def test_gradients_reach_every_learnable_logit(autocast):
    model = tiny("ancre", layers=5)
    topology = model.topology
    assert isinstance(topology, AncreTopology)
    tokens = torch.randint(0, VOCAB, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    grad = topology.logits.grad
    assert topology.logits.dtype == torch.float32 and grad.dtype == torch.float32
    assert grad.numel() == 5 * 6 // 2 - 1  # every entry but the frozen theta_0
    assert torch.all(grad != 0)


def test_bf16_autocast_runs_the_residual_stream_in_bf16():
    model = tiny("ancre")
    tokens = torch.randint(0, VOCAB, (1, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states = model.hidden_states(tokens)
        loss = model(tokens, tokens)
    assert all(s.dtype == torch.bfloat16 for s in states)
    assert loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_ignored_targets_do_not_count():
    model = tiny("ancre")
    tokens = torch.randint(0, VOCAB, (1, 8))
    targets = tokens.clone()
    full = model(tokens, targets, reduction="sum")
    targets[0, 4:] = -100
    partial = model(tokens, targets, reduction="sum")
    assert 0 < partial < full


def test_weights_start_normal_with_std_0_02():
    model = tiny("cascaded")
    std = model.blocks[0].mlp.up.weight.std().item()
    assert 0.017 < std < 0.023
    assert torch.all(model.norm.weight == 1)
