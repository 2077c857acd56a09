import pytest
import torch
from torch import nn

from ancre.config import ConfigError, TopologyConfig, load_config
from ancre.kernels import reference_backend
from ancre.model import build_model
from ancre.model.topology import (
    AncreTopology,
    FixedTopology,
    Topology,
    UniformTopology,
    parse_edges,
)
from ancre.model.topology.kinds import build_topology
from ancre.snapshot import TopologySnapshot
from tests.helpers.training import REPO


def expected_matrix(logits: torch.Tensor, num_layers: int, tau: float) -> torch.Tensor:
    """P from the flat learnable logits, row by row, straight from docs/method.md."""
    matrix = torch.zeros(num_layers, num_layers + 1)
    matrix[0, 0] = 1.0
    start = 0
    for j in range(1, num_layers):
        row = logits[start : start + j + 1]
        matrix[j, : j + 1] = torch.softmax(row / tau, dim=0)
        start += j + 1
    return matrix


def test_ancre_counts_learnable_logits_like_the_method():
    assert AncreTopology(24, reference_backend, 0.01).logits.numel() == 299
    assert AncreTopology(1, reference_backend, 0.01).logits.numel() == 0


def test_ancre_starts_uniform_with_frozen_first_row():
    topology = AncreTopology(5, reference_backend, 0.01)
    matrix = topology.matrix()
    assert matrix.shape == (5, 6)
    for j in range(5):
        torch.testing.assert_close(matrix[j, : j + 1], torch.full((j + 1,), 1 / (j + 1)))
        assert torch.all(matrix[j, j + 1 :] == 0)


def test_ancre_matrix_is_softmax_of_rows_over_temperature():
    torch.manual_seed(0)
    topology = AncreTopology(6, reference_backend, 0.5)
    with torch.no_grad():
        topology.logits.normal_()
    expected = expected_matrix(topology.logits.detach(), 6, 0.5)
    torch.testing.assert_close(topology.matrix(), expected)
    torch.testing.assert_close(topology.matrix().sum(1), torch.ones(6))
    rows = topology.logit_rows()
    assert [len(r) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].item() == 0.0


def test_uniform_and_cascaded_matrices():
    uniform = UniformTopology(4, reference_backend).matrix()
    torch.testing.assert_close(uniform[3, :4], torch.full((4,), 0.25))
    assert torch.all(uniform.triu(1) == 0)
    assert list(UniformTopology(4, reference_backend).parameters()) == []
    assert torch.all(Topology(4, reference_backend).matrix() == 0)


def test_topology_wires_any_blocks_by_the_formula():
    torch.manual_seed(1)
    blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(4))
    topology = AncreTopology(4, reference_backend, 1.0)
    with torch.no_grad():
        topology.logits.normal_()
    h0 = torch.randn(3, 8)
    states = topology(blocks, h0)
    P = topology.matrix()
    expected = [h0]
    for j, block in enumerate(blocks):
        y = block(expected[j])
        expected.append(y + sum(P[j, i] * expected[i] for i in range(j + 1)))
    assert len(states) == 5
    for got, want in zip(states, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_cascaded_is_a_plain_chain_of_blocks():
    blocks = [lambda h: 2 * h, lambda h: h + 1]
    states = Topology(2, reference_backend)(blocks, torch.ones(2))
    torch.testing.assert_close(states[-1], torch.full((2,), 3.0))


def test_wrong_number_of_blocks_is_refused():
    with pytest.raises(ValueError, match="wires 3 blocks, got 2"):
        Topology(3, reference_backend)([lambda h: h, lambda h: h], torch.ones(1))


def test_softmax_stays_fp32_under_bf16_autocast():
    topology = AncreTopology(4, reference_backend, 0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weights = topology.weights()
    assert weights.dtype == torch.float32
    assert topology.logits.dtype == torch.float32


def test_snapshot_holds_matrix_logits_and_temperature():
    topology = AncreTopology(3, reference_backend, 0.02)
    snapshot = topology.snapshot(step=7, tokens=700)
    assert isinstance(snapshot, TopologySnapshot)
    assert (snapshot.step, snapshot.tokens, snapshot.num_layers) == (7, 700, 3)
    assert snapshot.parameterisation == "softmax" and snapshot.temperature == 0.02
    assert [len(r) for r in snapshot.logits] == [1, 2, 3]
    snapshot.check()
    Topology(3, reference_backend).snapshot(0, 0).check()
    UniformTopology(3, reference_backend).snapshot(0, 0).check()


def test_build_topology_kinds():
    assert type(build_topology(TopologyConfig(kind="cascaded"), 2)) is Topology
    assert isinstance(build_topology(TopologyConfig(kind="uniform"), 2), UniformTopology)
    ancre = build_topology(TopologyConfig(kind="ancre", temperature=0.3), 2)
    assert isinstance(ancre, AncreTopology) and ancre.temperature == 0.3
    with pytest.raises(ValueError, match="topology.backend='nope' is not available"):
        build_topology(TopologyConfig(backend="nope"), 2)


def test_fixed_edges_build_the_matrix_and_may_leave_rows_empty():
    topology = build_topology(TopologyConfig(kind="fixed", edges="0:2, 2:3@0.5"), 3)
    expected = torch.zeros(3, 4)
    expected[1, 0] = 1.0  # 0:2: the input added to the output of layer 2
    expected[2, 2] = 0.5  # 2:3
    torch.testing.assert_close(topology.matrix(), expected)
    assert list(topology.parameters()) == []
    topology.snapshot(0, 0).check()  # rows that do not sum to one are fine when fixed


def test_fixed_stack_is_the_deep_linear_formula():
    torch.manual_seed(0)
    w1, w2, w3 = (nn.Linear(4, 4, bias=False) for _ in range(3))
    topology = FixedTopology(3, reference_backend, parse_edges("0:2", 3))
    x = torch.randn(5, 4)
    out = topology([w1, w2, w3], x)[-1]
    torch.testing.assert_close(out, w3(w2(w1(x)) + x))  # W3 (W2 W1 + I) x


@pytest.mark.parametrize(
    ("edges", "message"),
    [("2:1", "points backwards"), ("1:1", "points backwards"), ("0:4", "past the last layer"),
     ("0-2", "not i:j"), ("a:b", "not i:j")],
)  # fmt: skip
def test_bad_edges_are_named(edges, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_edges(edges, 3)
    assert info.value.key == "topology.edges"


def test_the_speedrun_patterns_follow_the_depth():
    assert parse_edges("x0", 4) == [(0, 1, 1.0), (0, 2, 1.0), (0, 3, 1.0)]
    assert parse_edges(" unet ", 8) == [(3, 5, 1.0), (2, 6, 1.0), (1, 7, 1.0)]
    assert parse_edges("unet", 4) == [(1, 3, 1.0)]
    for layers in (3, 2, 7):
        with pytest.raises(ConfigError, match="even number of at least 4") as info:
            parse_edges("unet", layers)
        assert info.value.key == "topology.edges"


def test_the_x0_pattern_gated_adds_the_embeddings_to_every_block_input():
    torch.manual_seed(0)
    blocks = [nn.Linear(4, 4, bias=False) for _ in range(3)]
    topology = FixedTopology(3, reference_backend, parse_edges("x0", 3), form="gated")
    with torch.no_grad():
        topology.gates.copy_(torch.tensor([0.5, -2.0, 7.0]))  # g_2 reads nothing: no 0:3
    x = torch.randn(5, 4)
    h1 = blocks[0](x) + 0.5 * x
    h2 = blocks[1](h1) - 2.0 * x
    torch.testing.assert_close(topology(blocks, x)[-1], blocks[2](h2))


@pytest.mark.parametrize("fragment", ["speedrun_x0", "speedrun_unet"])
def test_the_speedrun_fragments_start_as_the_plain_network(fragment):
    plain = load_config(REPO / "configs/quickstart.yaml", ["topology.kind=cascaded"])
    speedrun = load_config(
        [REPO / "configs/quickstart.yaml", REPO / f"configs/topologies/{fragment}.yaml"]
    )
    assert speedrun.topology.kind == "fixed" and speedrun.topology.form == "gated"
    models = []
    for config in (plain, speedrun):
        torch.manual_seed(0)
        models.append(build_model(config, 64))
    tokens = torch.randint(0, 64, (2, 16))
    torch.testing.assert_close(models[1](tokens), models[0](tokens), rtol=0, atol=0)
    assert models[1].topology.matrix().count_nonzero() > 0  # edges, gated shut at step 0
