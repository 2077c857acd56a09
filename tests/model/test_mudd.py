"""MUDD connections: the paper's mixes, its start as the plain network, its window, its blocks."""

import pytest
import torch
import torch.nn.functional as F

from ancre.config import ConfigError, load_config
from ancre.model.block import DecoderBlock
from ancre.model.layers import RotaryEmbedding, apply_rotary
from ancre.model.multiway import Multiway
from ancre.model.presets import resolve_shape
from tests.generate.test_cache import cached_and_full
from tests.helpers.zoo_models import VOCAB, perturb, tiny_model


def test_it_starts_as_the_plain_network_with_the_plain_models_draws():
    mudd, plain = tiny_model("mudd"), tiny_model("cascaded")
    mudd_weights = mudd.state_dict()
    for name, weight in plain.state_dict().items():  # the blocks draw what the plain run does
        assert torch.equal(mudd_weights[name], weight), name
    tokens = torch.randint(0, VOCAB, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(mudd(tokens), plain(tokens), rtol=0, atol=0)
    assert all(d.up.abs().sum() > 0 for d in mudd.topology.dense)  # W1 drawn, W2 zero
    assert all(d.down.abs().sum() == 0 for d in mudd.topology.dense)


def _weights_by_hand(topology, j: int, x: torch.Tensor) -> torch.Tensor:
    """A_j of the paper: GELU(RMSNorm(x) W1) W2 + a, from the parameters, (B, T, C, S)."""
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + topology.eps)  # no gain
    dense = topology.dense[j]
    flat = F.gelu(normed @ dense.up) @ dense.down  # (B, T, C S)
    static = dense.static
    return flat.view(*x.shape[:-1], *static.shape) + static


@torch.no_grad()
@pytest.mark.parametrize("window", [0, 2])
def test_every_input_is_the_papers_mix_of_the_sources(window):
    model = tiny_model("mudd", layers=5, extra=(f"topology.window={window}",))
    perturb(model)
    topology = model.topology
    read: list = []
    hook = lambda m, a, o: read.append((a[0], o))  # noqa: E731
    handles = [block.register_forward_hook(hook) for block in model.blocks]
    final: list = []
    handles.append(model.norm.register_forward_hook(lambda m, a, o: final.append(a[0])))
    tokens = torch.randint(0, VOCAB, (2, 12))
    model(tokens)
    for handle in handles:
        handle.remove()
    outputs = [model.embed(tokens)] + [out for _, out in read]  # x_0 .. x_L
    assert torch.equal(read[0][0], outputs[0])  # the first block reads the embeddings alone
    for j in range(model.shape.num_layers):
        expected_sources = list(range(j + 2))
        if window:
            expected_sources = [0, *range(max(1, j + 2 - window), j + 2)]
        assert topology.sources(j) == expected_sources
        weights = _weights_by_hand(topology, j, outputs[j + 1])  # (B, T, C, S)
        sources = torch.stack([outputs[i] for i in expected_sources], -2)  # (B, T, S, D)
        mixes = weights @ sources  # (B, T, C, D)
        if j == model.shape.num_layers - 1:
            torch.testing.assert_close(final[0], mixes[..., 0, :], rtol=1e-5, atol=1e-5)
            continue
        given = read[j + 1][0]
        assert isinstance(given, Multiway)
        for c, name in enumerate(Multiway._fields):
            torch.testing.assert_close(getattr(given, name), mixes[..., c, :], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_a_multiway_block_reads_queries_keys_values_and_residual_apart():
    config = load_config(None, ["model.hidden_size=32", "model.num_heads=4",
                                "model.intermediate_size=48", "data.seq_len=8"])  # fmt: skip
    shape = resolve_shape(config.model, VOCAB, 8)
    torch.manual_seed(0)
    block = DecoderBlock(shape, multiway=True)
    for norm in (block.attn_norm, block.key_norm, block.value_norm):
        norm.weight.normal_(1.0, 0.3)  # three different gains
    q_in, k_in, v_in, r_in = torch.randn(4, 2, 8, 32).unbind(0)
    block_rope = RotaryEmbedding(shape.head_dim, shape.max_seq_len, shape.rope_theta)(8)
    cos, sin = block_rope
    got = block(Multiway(q_in, k_in, v_in, r_in), block_rope)

    def heads(x, weight):  # (B, T, D) -> (B, H, T, K)
        return (x @ weight.T).view(2, 8, 4, 8).transpose(1, 2)

    attn = block.attn
    q = apply_rotary(heads(block.attn_norm(q_in), attn.wq.weight), cos, sin)
    k = apply_rotary(heads(block.key_norm(k_in), attn.wk.weight), cos, sin)
    v = heads(block.value_norm(v_in), attn.wv.weight)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 8, 32)
    h = r_in + out @ attn.wo.weight.T
    expected = h + block.mlp(block.mlp_norm(h))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # one state as all four inputs: the plain block's output when the three norms agree
    for norm in (block.key_norm, block.value_norm):
        norm.weight.copy_(block.attn_norm.weight)
    plain = DecoderBlock(shape)
    plain.load_state_dict(block.state_dict(), strict=False)
    torch.testing.assert_close(block(q_in, block_rope), plain(q_in, block_rope))
    with pytest.raises(ValueError, match="four"):
        plain(Multiway(q_in, k_in, v_in, r_in), block_rope)


def test_cached_decoding_equals_the_full_forward_pass():
    model = tiny_model("mudd", extra=("data.seq_len=20",)).eval()
    perturb(model)
    cached, full = cached_and_full(model, VOCAB)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)


def test_the_snapshot_holds_the_residual_mix_and_the_other_mixes_means():
    model = tiny_model("mudd")
    perturb(model)
    topology = model.topology
    with topology.recording(), torch.no_grad():
        model(torch.randint(0, VOCAB, (2, 8)))
    reads = topology.reads()  # (N, L+1, L+1)
    recorded = topology.recorded()
    for j, (weights,) in enumerate(recorded):  # (N, C, S): residual is the last stream
        stream = weights.shape[1] - 1
        torch.testing.assert_close(reads[:, j + 1, : j + 2], weights[:, stream].double())
    snapshot = topology.snapshot(3, 30)
    key_reads = torch.tensor(snapshot.raw["key_reads"])  # (L, L+1): rows 1.. are the key mixes
    mean_key = recorded[1][0][:, 1].mean(0)  # the key mix after block 1, over x_0 .. x_2
    torch.testing.assert_close(key_reads[2, :3], mean_key, rtol=1e-5, atol=1e-6)
    assert snapshot.parameterisation == "mudd" and "GELU" in snapshot.formula


def test_window_is_read_only_by_mudd_and_must_be_whole():
    with pytest.raises(ConfigError, match="topology.window: is read only by kind mudd"):
        load_config(None, ["topology.kind=ancre", "topology.window=2"])
    with pytest.raises(ConfigError, match="topology.window: is -1"):
        load_config(None, ["topology.kind=mudd", "topology.window=-1"])
