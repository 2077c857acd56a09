"""DenseFormer: the depth-weighted averages recomputed from what the blocks wrote."""

import pytest
import torch

from ancre.config import load_config
from ancre.kernels import select_mix
from ancre.model import build_model
from ancre.model.topology.zoo.denseformer import DenseFormerTopology, dwa_entries
from tests.helpers.zoo_models import VOCAB, capture, perturb, tiny_model


def test_dilation_and_period_choose_the_weights_of_the_paper():
    assert dwa_entries(2, 1, 1) == [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    # dilation 2: depth i reads the x_k with i - k even; period 2: a DWA at depths 2, 4
    assert dwa_entries(4, 2, 2) == [(2, 0), (2, 2), (4, 0), (4, 2), (4, 4)]
    assert dwa_entries(3, 2, 1) == [(1, 1), (2, 0), (2, 2), (3, 1), (3, 3)]


@pytest.mark.parametrize("name", ["denseformer", "denseformer-k2p2"])
def test_every_block_reads_the_weighted_average_of_the_outputs_before_it(name):
    model = tiny_model(name)
    perturb(model)
    topology = model.topology
    assert isinstance(topology, DenseFormerTopology)
    alpha = {e: float(a) for e, a in zip(dwa_entries(4, topology.dilation, topology.period),
                                          topology.alpha.detach(), strict=True)}  # fmt: skip
    seen = capture(model, torch.randint(0, VOCAB, (2, 12)))
    xs = [seen.embeddings, *seen.outputs]  # x_0 .. x_L
    reads = [*seen.inputs, seen.final]  # h_0 .. h_L
    torch.testing.assert_close(reads[0], xs[0])
    for i in range(1, 5):
        if any(depth == i for depth, _ in alpha):
            expected = sum(alpha.get((i, k), 0.0) * xs[k] for k in range(i + 1))
        else:
            expected = xs[i]  # no DWA at this depth
        torch.testing.assert_close(reads[i], expected, atol=2e-5, rtol=1e-4)


def test_identity_start_is_exactly_the_plain_residual_network():
    tokens = torch.randint(0, VOCAB, (2, 12))
    plain = tiny_model("cascaded")(tokens)
    for name in ("denseformer", "denseformer-k2p2"):
        assert torch.equal(tiny_model(name)(tokens), plain)


def test_the_fused_backend_gives_the_reference_values_and_gradients():
    select_mix("triton")  # under TRITON_INTERPRET=1 on a CPU (tests/conftest.py)
    results = []
    for backend in ("reference", "triton"):
        torch.manual_seed(0)
        config = load_config(
            None,
            ["topology.kind=denseformer", f"topology.backend={backend}", "model.num_layers=4",
             "model.hidden_size=32", "model.intermediate_size=48", "model.num_heads=4",
             "data.seq_len=16"],
        )  # fmt: skip
        model = build_model(config, VOCAB)
        perturb(model)
        tokens = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(3))
        loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        results.append((loss.detach(), model.topology.alpha.grad.clone()))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-5, rtol=1e-4)


def test_snapshot_matrix_is_the_method_form_of_alpha():
    model = tiny_model("denseformer")
    perturb(model)
    snapshot = model.topology.snapshot(3, 30)
    snapshot.check()
    assert snapshot.parameterisation == "denseformer" and snapshot.spread is None
    # h_{j+1} = d_j y_j + sum_i P[j, i] h_i on the captured states
    seen = capture(model, torch.randint(0, VOCAB, (1, 8)))
    reads = [*seen.inputs, seen.final]
    for j in range(4):
        expected = snapshot.own_output[j] * seen.outputs[j] + sum(
            snapshot.matrix[j][i] * reads[i] for i in range(j + 1)
        )
        torch.testing.assert_close(reads[j + 1], expected, atol=5e-5, rtol=1e-4)
