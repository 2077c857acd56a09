"""Value residual learning (model.value_residual): the attention values of later blocks
mix in the first block's, as ResFormer writes it; with (l1, l2) = (0, 1) it is the plain
model; cached decoding, recompute and the gradient of V_1 hold."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ancre.config import load_config
from ancre.model import build_model
from ancre.model.layers import CausalSelfAttention, RotaryEmbedding, apply_rotary
from ancre.model.value_residual import START, FirstValues, ValueMix
from ancre.train.speedups import apply_speedups
from tests.generate.test_cache import cached_and_full
from tests.helpers.training import QUICKSTART
from tests.helpers.zoo_models import VOCAB, ZOO, tiny_model


def model_with(*extra: str):
    config = load_config(QUICKSTART, ["model.num_layers=4", "model.num_kv_heads=2",
                                      "topology.backend=reference", *extra])  # fmt: skip
    torch.manual_seed(0)
    return build_model(config, VOCAB), config


def test_a_later_block_attends_with_l1_v1_plus_l2_v():
    torch.manual_seed(0)
    attention = CausalSelfAttention(32, 4, num_kv_heads=2, value_mix=ValueMix(first=False))
    with torch.no_grad():
        attention.value_mix.weights.copy_(torch.tensor([0.3, 1.7]))
    x, v1 = torch.randn(2, 6, 32), torch.randn(2, 2, 6, 8)  # V_1: (B, G, T, K)
    rope = RotaryEmbedding(8, 16)(6)
    got = attention(x, rope, first_values=FirstValues(v1))

    def heads(t, n):  # (B, T, n K) -> (B, n, T, K)
        return t.view(2, 6, n, 8).transpose(1, 2)

    q = apply_rotary(heads(attention.wq(x), 4), *rope)
    k = apply_rotary(heads(attention.wk(x), 2), *rope).repeat_interleave(2, dim=1)
    v = (0.3 * v1 + 1.7 * heads(attention.wv(x), 2)).repeat_interleave(2, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, K)
    expected = attention.wo(out.transpose(1, 2).reshape(2, 6, 32))
    torch.testing.assert_close(got, expected)


def test_with_l1_0_and_l2_1_the_model_is_the_plain_one():
    mixed, _ = model_with("model.value_residual=true")
    plain, _ = model_with()
    state = {n: t for n, t in mixed.state_dict().items() if "value_mix" not in n}
    plain.load_state_dict(state, strict=True)  # the same weights otherwise
    tokens = torch.randint(0, VOCAB, (2, 16))
    assert not torch.equal(mixed(tokens), plain(tokens))  # (0.5, 0.5) at the start
    with torch.no_grad():
        for block in mixed.blocks[1:]:
            block.attn.value_mix.weights.copy_(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(mixed(tokens), plain(tokens), rtol=0, atol=0)


def test_the_mix_starts_at_one_half_and_the_first_block_has_none():
    model, _ = model_with("model.value_residual=true")
    assert model.blocks[0].attn.value_mix.weights is None
    for block in model.blocks[1:]:
        assert block.attn.value_mix.weights.tolist() == list(START)
    names = [n for n, _ in model.named_parameters() if "value_mix" in n]
    assert len(names) == len(model.blocks) - 1


def test_v1_learns_from_every_later_block():
    tokens = torch.randint(0, VOCAB, (2, 16))
    grads = []
    for l1 in (0.0, 0.5):  # V_1 read by the later blocks or not
        model, _ = model_with("model.value_residual=true")
        with torch.no_grad():
            for block in model.blocks[1:]:
                block.attn.value_mix.weights[0] = l1
        model(tokens, tokens).backward()
        grads.append(model.blocks[0].attn.wv.weight.grad)
        assert all(b.attn.value_mix.weights.grad.abs().sum() > 0 for b in model.blocks[1:])
    assert not torch.allclose(grads[0], grads[1])  # not detached: later blocks teach V_1


def test_cached_decoding_equals_the_full_forward():
    model, _ = model_with("model.value_residual=true", "model.laurel=rw_lr")
    cached, full = cached_and_full(model.eval(), VOCAB)
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("recompute", ["blocks", "every_k"])
def test_recomputed_blocks_give_the_same_loss_and_gradients(recompute):
    losses, grads = [], []
    for setting in ("none", recompute):
        model, config = model_with("model.value_residual=true", f"train.recompute={setting}")
        model = apply_speedups(model, config.train).train()
        tokens = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(2))
        loss = model(tokens, tokens)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("kind", ["cascaded", "ancre", *ZOO])
def test_both_block_options_combine_with_every_kind(kind):
    model = tiny_model(kind, extra=("model.value_residual=true", "model.laurel=rw_lr",
                                    "model.laurel_rank=4"))  # fmt: skip
    tokens = torch.randint(0, VOCAB, (2, 12))
    model(tokens, tokens).backward()
    for block in model.blocks[1:]:
        assert block.attn.value_mix.weights.grad.abs().sum() > 0
        assert block.mlp_residual.up.grad.abs().sum() > 0
