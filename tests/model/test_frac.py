"""Frac-Connections: the paper's formula, its start as the plain network, its reads, its keys."""

import pytest
import torch

from ancre.config import ConfigError, load_config
from ancre.model import check_buildable
from tests.helpers.zoo_models import VOCAB, capture, perturb, tiny_model


@torch.no_grad()
@pytest.mark.parametrize("name", ["frac", "frac-dynamic"])
def test_it_starts_as_the_plain_network_exactly(name):
    frac, plain = tiny_model(name), tiny_model("cascaded")
    tokens = torch.randint(0, VOCAB, (2, 16))
    torch.testing.assert_close(frac(tokens), plain(tokens), rtol=0, atol=0)


@torch.no_grad()
@pytest.mark.parametrize("name", ["frac", "frac-dynamic"])
def test_every_block_reads_and_writes_the_papers_fractions(name):
    model = tiny_model(name)
    perturb(model)
    topology, m = model.topology, model.topology.fractions
    seen = capture(model, torch.randint(0, VOCAB, (2, 12)))
    state = seen.embeddings.unflatten(-1, (m, -1))  # H_0: (B, T, m, D/m)
    for j in range(model.shape.num_layers):
        maps = topology.maps(j, state)
        g, a, b = maps.pre, maps.res, maps.post  # (.., m, m), (.., m, m), (.., m)
        u = torch.stack(
            [sum(g[..., k, i, None] * state[..., k, :] for k in range(m)) for i in range(m)], -2
        )  # fraction i of the input: sum_k G[k, i] H^k
        torch.testing.assert_close(seen.inputs[j], u.flatten(-2), rtol=1e-5, atol=1e-5)
        update = seen.outputs[j].unflatten(-1, (m, -1)) - u  # y_j - u_j
        state = torch.stack(
            [b[..., k, None] * update[..., k, :]
             + sum(a[..., i, k, None] * state[..., i, :] for i in range(m)) for k in range(m)],
            -2,
        )  # fmt: skip
    torch.testing.assert_close(seen.final, state.flatten(-2), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_the_reads_are_exact_while_the_fractions_do_not_mix():
    model = tiny_model("frac")
    topology = model.topology
    generator = torch.Generator().manual_seed(3)
    layers, m = topology.num_layers, topology.fractions

    def near_one(*shape: int) -> torch.Tensor:
        return 1 + 0.3 * torch.randn(*shape, generator=generator)

    topology.static_pre.copy_(torch.diag_embed(near_one(layers, m)))
    topology.static_res.copy_(torch.diag_embed(near_one(layers, m)))
    topology.static_post.copy_(near_one(layers, 1).expand(-1, m))  # one B per block
    reads = topology.reads()[0].float()  # (L+1, L+1): exact in this case
    seen = capture(model, torch.randint(0, VOCAB, (2, 12)))
    sources = torch.stack([seen.embeddings, *seen.outputs])  # x_0 .. x_L: (L+1, B, T, D)
    fractions = sources.unflatten(-1, (m, -1))  # (L+1, B, T, m, D/m)
    for j in range(layers):  # a fraction-diagonal wiring is a per-fraction matrix
        per_fraction = torch.stack(
            [torch.einsum("x,xbtd->btd", _fraction_row(topology, j, f).float(),
                          fractions[..., f, :]) for f in range(m)], -2,
        ).flatten(-2)  # fmt: skip
        torch.testing.assert_close(seen.inputs[j], per_fraction, rtol=1e-4, atol=1e-5)
        mean_row = torch.stack([_fraction_row(topology, j, f) for f in range(m)]).mean(0)
        torch.testing.assert_close(reads[j], mean_row.float(), rtol=1e-5, atol=1e-6)


def _fraction_row(topology, j: int, f: int) -> torch.Tensor:
    """Fraction f of block j's input over x_0 .. x_L, for a diagonal wiring, by recursion."""
    g = topology.static_pre[:, f, f].double()
    a = topology.static_res[:, f, f].double()
    b = topology.static_post[:, f].double()
    size = topology.num_layers + 1
    coefficient = torch.zeros(size, dtype=torch.float64)
    coefficient[0] = 1.0  # fraction f of the state, over x
    for k in range(j):
        u = g[k] * coefficient
        update = -u
        update[k + 1] += 1.0
        coefficient = a[k] * coefficient + b[k] * update
    return g[j] * coefficient


def test_fractions_need_one_stream_a_divisible_width_and_kind_hyper():
    with pytest.raises(ConfigError, match="set topology.streams=1"):
        load_config(None, ["topology.kind=hyper", "topology.fractions=4"])
    with pytest.raises(ConfigError, match="topology.fractions: is read only by kind hyper"):
        load_config(None, ["topology.kind=ancre", "topology.fractions=2"])
    config = load_config(None, ["topology.kind=hyper", "topology.streams=1",
                                "topology.fractions=3", "model.hidden_size=32"])  # fmt: skip
    with pytest.raises(ConfigError, match="it must divide model.hidden_size"):
        check_buildable(config)
