"""Attention Residuals: the softmax over depth recomputed from what the blocks wrote."""

import pytest
import torch

from ancre.config import ConfigError
from ancre.model.topology.zoo.attnres import group_size
from tests.helpers.zoo_models import VOCAB, capture, perturb, tiny_model


def paper_inputs(queries, h0, outputs, inputs, group, eps):
    """h_{j+1} = sum_i softmax_i(q_j . RMSNorm(v_i)) v_i over the sources of the paper."""
    updates = [y - h for y, h in zip(outputs, inputs, strict=True)]  # v_1 .. v_L
    expected = []
    for j in range(len(outputs)):
        done = (j + 1) // group  # finished groups
        sources = [h0] + [sum(updates[g * group : (g + 1) * group]) for g in range(done)]
        if (j + 1) % group:
            sources.append(sum(updates[done * group : j + 1]))  # the group under way
        keys = [v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + eps) for v in sources]
        weights = torch.softmax(torch.stack([k @ queries[j] for k in keys], -1), -1)
        expected.append(sum(weights[..., i : i + 1] * v for i, v in enumerate(sources)))
    return expected


@pytest.mark.parametrize(("name", "group"), [("attnres", 1), ("attnres-blocks", 2)])
def test_every_block_reads_a_softmax_over_depth_of_the_earlier_updates(name, group):
    model = tiny_model(name).double()
    perturb(model, scale=3.0)  # queries far from zero: weights far from uniform
    seen = capture(model, torch.randint(0, VOCAB, (2, 12)))
    queries = model.topology.queries.detach()
    expected = paper_inputs(queries, seen.embeddings, seen.outputs, seen.inputs, group,
                            model.topology.eps)  # fmt: skip
    reads = [*seen.inputs[1:], seen.final]
    torch.testing.assert_close(seen.inputs[0], seen.embeddings)
    for got, want in zip(reads, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_zero_queries_start_from_the_plain_average():
    model = tiny_model("attnres")
    seen = capture(model, torch.randint(0, VOCAB, (1, 8)))
    updates = [y - h for y, h in zip(seen.outputs, seen.inputs, strict=True)]
    second = (seen.embeddings + updates[0]) / 2
    torch.testing.assert_close(seen.inputs[1], second)


def test_groups_must_divide_the_blocks():
    assert group_size(6, 0) == 1 and group_size(6, 3) == 2 and group_size(6, 6) == 1
    with pytest.raises(ConfigError, match="topology.attnres_blocks"):
        group_size(6, 4)


def test_the_delta_form_reads_the_plain_stream_plus_the_routed_updates():
    model = tiny_model("attnres-delta").double()
    perturb(model, scale=3.0)
    seen = capture(model, torch.randint(0, VOCAB, (2, 12)))
    queries = model.topology.queries.detach()
    routed = paper_inputs(queries, seen.embeddings, seen.outputs, seen.inputs, 1,
                          model.topology.eps)  # fmt: skip
    stream = seen.embeddings  # s_0
    for j, (h, y) in enumerate(zip(seen.inputs, seen.outputs, strict=True)):
        stream = stream + (y - h)  # s_{j+1}: the plain sum of the updates
        read = seen.inputs[j + 1] if j + 1 < len(seen.inputs) else seen.final
        torch.testing.assert_close(read, stream + routed[j])


def test_the_effective_reads_reproduce_every_input_of_the_delta_form():
    model = tiny_model("attnres-delta").double()
    perturb(model, scale=3.0)
    topology = model.topology
    tokens = torch.randint(0, VOCAB, (1, 6))
    with topology.recording(), torch.no_grad():
        seen = capture(model, tokens)
    reads = topology.reads()  # (N, L+1, L+1) over x_0 .. x_L, per token
    x = torch.stack([seen.embeddings, *seen.outputs], -2).reshape(-1, len(seen.outputs) + 1, 32)
    inputs = torch.stack([*seen.inputs, seen.final], -2).reshape(-1, len(seen.outputs) + 1, 32)
    torch.testing.assert_close(torch.einsum("nji,nid->njd", reads, x), inputs)
