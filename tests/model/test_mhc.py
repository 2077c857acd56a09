"""mHC: the paper's maps recomputed from what the blocks wrote; the package on the same biases."""

import pytest
import torch
from torch import nn

from ancre.kernels import reference_backend
from ancre.model.topology.zoo.mhc import ManifoldHyperTopology, sinkhorn_knopp
from tests.helpers.zoo_models import VOCAB, capture, perturb, tiny_model


def test_sinkhorn_knopp_gives_doubly_stochastic_matrices():
    matrix = sinkhorn_knopp(torch.randn(5, 4, 4), iters=20)
    torch.testing.assert_close(matrix.sum(-1), torch.ones(5, 4))
    torch.testing.assert_close(matrix.sum(-2), torch.ones(5, 4), atol=1e-3, rtol=0)
    assert torch.all(matrix > 0)


def paper_mhc(topology: ManifoldHyperTopology, h0, outputs, eps):
    """x_{l+1} = H_res x_l + H_post^T (y_l - H_pre x_l), with the paper's maps, step by step."""
    n = topology.streams
    x = h0.unsqueeze(-2).repeat(*([1] * (h0.ndim - 1)), n, 1)  # (..., n, D)
    inputs = []
    for layer, y in enumerate(outputs):
        pre, post, res = (topology.static_pre[layer], topology.static_post[layer],
                          topology.static_res[layer])  # fmt: skip
        if topology.dynamic:
            flat = x.flatten(-2)  # vec(x_l)
            z = flat / torch.sqrt(flat.pow(2).mean(-1, keepdim=True) + eps)
            z = z * topology.norm_weight[layer]
            p = z @ topology.projection[layer]
            a_pre, a_post, a_res = topology.gates[layer]
            pre = a_pre * p[..., :n] + pre
            post = a_post * p[..., n : 2 * n] + post
            res = a_res * p[..., 2 * n :].reshape(*p.shape[:-1], n, n) + res
        h_pre, h_post = torch.sigmoid(pre), 2 * torch.sigmoid(post)
        m = torch.exp(res)
        for _ in range(topology.sinkhorn_iters):
            m = m / m.sum(-2, keepdim=True)
            m = m / m.sum(-1, keepdim=True)
        h = (h_pre.unsqueeze(-1) * x).sum(-2)  # H_pre x_l
        inputs.append(h)
        x = m @ x + h_post.unsqueeze(-1) * (y - h).unsqueeze(-2)
    return inputs, x.sum(-2)


@pytest.mark.parametrize("name", ["mhc", "mhc-dynamic"])
def test_blocks_read_and_write_the_streams_with_the_paper_maps(name):
    model = tiny_model(name).double()
    perturb(model)
    seen = capture(model, torch.randint(0, VOCAB, (2, 12)))
    with torch.no_grad():
        inputs, final = paper_mhc(
            model.topology, seen.embeddings, seen.outputs, model.shape.norm_eps
        )
    for got, want in zip(seen.inputs, inputs, strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(seen.final, final)


def test_stream_mixing_is_doubly_stochastic_at_every_block():
    model = tiny_model("mhc-dynamic")
    perturb(model)
    with model.topology.recording(), torch.no_grad():
        model(torch.randint(0, VOCAB, (2, 12)))
    for _, res, _ in model.topology.recorded():  # res = H_res^T
        ones = torch.ones(res.shape[:-1])
        torch.testing.assert_close(res.sum(-2), ones)  # rows of H_res: normalised last
        torch.testing.assert_close(res.sum(-1), ones, atol=2e-2, rtol=0)  # 20 iterations
        assert torch.all(res > 0)


hyper_connections = pytest.importorskip("hyper_connections")


def test_agrees_with_the_hyper_connections_package_on_the_static_maps():
    """The package's dynamic maps read each stream alone where the paper reads vec(x_l):
    ancre follows the paper, so the two are compared with the dynamic part off. Sinkhorn
    runs to convergence: the two normalise rows and columns in opposite orders."""
    torch.manual_seed(0)
    n, width, layers = 3, 16, 3
    blocks = [nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(layers)]
    ours = ManifoldHyperTopology(layers, reference_backend, width, n, sinkhorn_iters=200)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.5 * torch.randn_like(p))
    theirs = []
    for j in range(layers):
        hc = hyper_connections.ManifoldConstrainedHyperConnections(
            n, dim=width, layer_index=j, sinkhorn_iters=200
        )
        with torch.no_grad():
            # theirs: new stream t = sum_s alpha[s, t] x_s, i.e. alpha = H_res^T
            hc.static_alpha.copy_(torch.cat([ours.static_pre[j][:, None], ours.static_res[j].T], 1))
            hc.static_beta.copy_(ours.static_post[j])
        theirs.append(hc)
    h0 = torch.randn(2, 5, width)
    expand, reduce = hyper_connections.mc_get_expand_reduce_stream_functions(n)[:2]
    with torch.no_grad():
        states = ours([lambda h, b=b: h + b(h) for b in blocks], h0)
        residuals = expand(h0)
        for j, hc in enumerate(theirs):
            branch_input, add_residual = hc(residuals)
            if j:
                torch.testing.assert_close(states[j], branch_input, atol=1e-5, rtol=1e-5)
            residuals = add_residual(blocks[j](branch_input))
        torch.testing.assert_close(states[-1], reduce(residuals), atol=1e-5, rtol=1e-5)


def test_sinkhorn_orders_differ_little_at_twenty_iterations():
    """The gap that the opposite normalisation order leaves at the default 20 iterations."""
    logits = torch.eye(4) + 0.5 * torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    ours = sinkhorn_knopp(logits, 20)
    theirs = hyper_connections.manifold_constrained_hyper_connections.sinkhorn_knopps(
        logits.T, 20
    ).T
    assert float((ours - theirs).abs().max()) < 1e-3
    assert not torch.equal(ours, theirs)
