"""Hyper-Connections: the paper's algorithm recomputed from what the blocks wrote, and the
independent implementation of the hyper-connections package on the same weights."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ancre.kernels import reference_backend
from ancre.model.topology.zoo.hyper import HyperTopology
from tests.helpers.zoo_models import VOCAB, capture, perturb, tiny_model


def paper_streams(topology: HyperTopology, h0, outputs, eps):
    """Algorithm 2 of the paper, step by step: the block inputs and the final sum."""
    n = topology.streams
    streams = [h0.clone() for _ in range(n)]  # H_0: the embeddings in every stream
    inputs = []
    for j, y in enumerate(outputs):
        a_m, a_r, b = topology.static_pre[j], topology.static_res[j], topology.static_post[j]
        if topology.dynamic:
            normed = [F.rms_norm(s, s.shape[-1:], topology.norm_weight[j], eps) for s in streams]
            a = [
                torch.tanh(x @ topology.dynamic_alpha[j]) * topology.alpha_scale[j] for x in normed
            ]
            c = [torch.tanh(x @ topology.dynamic_beta[j]) * topology.beta_scale[j] for x in normed]
            a_m = [a_m[s] + a[s][..., 0] for s in range(n)]
            a_r = [[a_r[s, t] + a[s][..., 1 + t] for t in range(n)] for s in range(n)]
            b = [b[s] + c[s] for s in range(n)]
        h = sum(a_m[s].unsqueeze(-1) * streams[s] if topology.dynamic else a_m[s] * streams[s]
                for s in range(n))  # fmt: skip
        inputs.append(h)
        update = y - h  # the paper's T(h): the block without its residual
        new = []
        for t in range(n):
            if topology.dynamic:
                weights = [a_r[s][t].unsqueeze(-1) for s in range(n)]
                beta = b[t].unsqueeze(-1)
            else:
                weights, beta = [a_r[s, t] for s in range(n)], b[t]
            new.append(sum(weights[s] * streams[s] for s in range(n)) + beta * update)
        streams = new
    return inputs, sum(streams)


@pytest.mark.parametrize("name", ["hyper", "hyper-dynamic"])
def test_blocks_read_and_write_the_streams_as_in_the_paper(name):
    model = tiny_model(name).double()  # fp64: the two orders of operations agree closely
    perturb(model)
    seen = capture(model, torch.randint(0, VOCAB, (2, 12)))
    with torch.no_grad():
        eps = model.shape.norm_eps
        inputs, final = paper_streams(model.topology, seen.embeddings, seen.outputs, eps)
    for got, want in zip(seen.inputs, inputs, strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(seen.final, final)


@pytest.mark.parametrize("name", ["hyper", "hyper-dynamic"])
def test_start_computes_the_plain_residual_network(name):
    tokens = torch.randint(0, VOCAB, (2, 12))
    plain = capture(tiny_model("cascaded"), tokens)
    seen = capture(tiny_model(name), tokens)
    for got, want in zip(seen.inputs, plain.inputs, strict=True):
        assert torch.equal(got, want)  # every stream is the plain residual stream
    torch.testing.assert_close(seen.final, 3 * plain.final)  # the sum of 3 equal streams
    # after the final RMSNorm (scale-free but for its eps) the logits are the plain ones
    model = tiny_model(name)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), model.head(model.norm(3 * plain.final)))
        torch.testing.assert_close(model(tokens), tiny_model("cascaded")(tokens), atol=1e-3, rtol=0)


hyper_connections = pytest.importorskip("hyper_connections")


@pytest.mark.parametrize("dynamic", [False, True])
def test_agrees_with_the_hyper_connections_package(dynamic):
    torch.manual_seed(0)
    n, width, layers = 3, 16, 3
    blocks = [nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(layers)]
    residual_blocks = [lambda h, b=b: h + b(h) for b in blocks]  # ancre's blocks keep h
    ours = HyperTopology(layers, reference_backend, width, n, dynamic, eps=1e-12)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.3 * torch.randn_like(p))
    theirs = []
    for j in range(layers):
        hc = hyper_connections.HyperConnections(n, dim=width, layer_index=j, tanh=True)
        with torch.no_grad():
            hc.static_alpha.copy_(torch.cat([ours.static_pre[j][:, None], ours.static_res[j]], 1))
            hc.static_beta.copy_(ours.static_post[j])
            if dynamic:
                hc.dynamic_alpha_fn.copy_(ours.dynamic_alpha[j])
                hc.dynamic_alpha_scale.copy_(ours.alpha_scale[j])
                hc.dynamic_beta_fn.copy_(ours.dynamic_beta[j])
                hc.dynamic_beta_scale.copy_(ours.beta_scale[j])
                hc.norm.gamma.copy_(ours.norm_weight[j] - 1)  # theirs scales by gamma + 1
            else:
                hc.dynamic_alpha_scale.zero_()
                hc.dynamic_beta_scale.zero_()
        theirs.append(hc)
    h0 = torch.randn(2, 5, width)
    expand, reduce = hyper_connections.get_expand_reduce_stream_functions(n)[:2]
    with torch.no_grad():
        states = ours(residual_blocks, h0)
        residuals = expand(h0)
        for j, hc in enumerate(theirs):
            branch_input, add_residual = hc(residuals)
            if j:  # states[0] is the embeddings, not block 0's input
                torch.testing.assert_close(states[j], branch_input, atol=1e-5, rtol=1e-5)
            residuals = add_residual(blocks[j](branch_input))
        torch.testing.assert_close(states[-1], reduce(residuals), atol=1e-5, rtol=1e-5)
