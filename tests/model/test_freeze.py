"""Learn, then freeze: pruning rows, the frozen mix over kept edges, and when it freezes."""

from __future__ import annotations

import pytest
import torch

from ancre.config import ConfigError, TopologyConfig, load_config
from ancre.kernels import reference_backend
from ancre.kernels.reference import mix
from ancre.model import build_model
from ancre.model.topology import AncreTopology, UniformTopology, freeze_if_due
from ancre.model.topology.freeze import FrozenWiring, prune_matrix
from tests.conftest import REPO

MATRIX = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.3, 0.7, 0.0, 0.0],
        [0.5, 0.3, 0.2, 0.0],
    ]
)


def test_top_k_keeps_the_largest_entries_renormalised() -> None:
    pruned = prune_matrix(MATRIX, "top_k", k=2)
    expected = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.3, 0.7, 0.0, 0.0], [0.625, 0.375, 0.0, 0.0]])
    torch.testing.assert_close(pruned, expected)


def test_mass_keeps_the_fewest_entries_that_reach_it() -> None:
    pruned = prune_matrix(MATRIX, "mass", mass=0.7)  # 0.7 reaches it; 0.5 does not
    expected = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.625, 0.375, 0.0, 0.0]])
    torch.testing.assert_close(pruned, expected)
    torch.testing.assert_close(prune_matrix(MATRIX, "mass", mass=1.0), MATRIX)
    torch.testing.assert_close(prune_matrix(MATRIX, "none"), MATRIX)


def test_ties_go_to_the_earlier_state() -> None:
    uniform = UniformTopology(4, reference_backend).matrix()
    pruned = prune_matrix(uniform, "top_k", k=2)
    assert FrozenWiring.of(pruned).edges == ((0,), (0, 1), (0, 1), (0, 1))
    torch.testing.assert_close(pruned.sum(1), torch.ones(4))


@pytest.mark.parametrize("mode, k, mass", [("top_k", 0, 0.5), ("mass", 1, 0.0), ("x", 1, 1.0)])
def test_bad_prune_settings_are_refused(mode: str, k: int, mass: float) -> None:
    with pytest.raises(ValueError):
        prune_matrix(MATRIX, mode, k, mass)


def learned(num_layers: int = 5) -> AncreTopology:
    torch.manual_seed(0)
    topology = AncreTopology(num_layers, reference_backend, 0.5)
    with torch.no_grad():
        topology.logits.normal_()
    return topology


def run(topology: AncreTopology, h0: torch.Tensor, blocks) -> list[torch.Tensor]:
    return topology(blocks, h0)


def test_frozen_forward_is_the_mix_of_the_pruned_matrix() -> None:
    topology = learned()
    blocks = [torch.nn.Linear(8, 8) for _ in range(5)]
    h0 = torch.randn(2, 3, 8)
    expected_matrix = prune_matrix(topology.matrix(), "top_k", k=2)
    wiring = topology.freeze(step=3, prune="top_k", k=2)
    torch.testing.assert_close(topology.matrix(), expected_matrix)
    assert wiring.num_edges == 1 + 2 + 2 + 2 + 2
    states = [h0]
    for j, block in enumerate(blocks):
        states.append(mix(block(states[-1]), states, expected_matrix[j, : j + 1]))
    torch.testing.assert_close(run(topology, h0, blocks)[-1], states[-1], rtol=0, atol=1e-6)


def test_frozen_mix_reads_only_kept_states_and_computes_no_matrix_gradient() -> None:
    topology = learned()
    wiring = topology.freeze(step=3, prune="top_k", k=1)
    mixer = topology.mixer(topology.weights())
    states = [torch.full((4,), float("nan")) for _ in range(5)]
    for j, kept in enumerate(wiring.edges):
        states_j = list(states[: j + 1])
        for i in kept:
            states_j[i] = torch.ones(4)
        assert torch.isfinite(mixer(j, torch.zeros(4), states_j)).all()  # NaNs never read
    blocks = [torch.nn.Linear(8, 8) for _ in range(5)]
    run(topology, torch.randn(2, 8), blocks)[-1].sum().backward()
    assert topology.logits.grad is None and not topology.logits.requires_grad
    assert all(b.weight.grad is not None for b in blocks)


def test_frozen_snapshot_holds_the_edges() -> None:
    topology = learned(4)
    wiring = topology.freeze(step=7, prune="mass", mass=0.6)
    snapshot = topology.snapshot(step=9, tokens=0)
    snapshot.check()
    assert snapshot.frozen_at == 7 and snapshot.edges == [list(e) for e in wiring.edges]
    assert snapshot.logits == [r.tolist() for r in topology.logit_rows()]


def test_freeze_if_due_follows_freeze_at() -> None:
    config = TopologyConfig(freeze_at=5, prune="top_k", prune_k=1)
    topology = learned(3)
    assert freeze_if_due(topology, config, 4) is None and topology.wiring is None
    first = freeze_if_due(topology, config, 5)
    assert first is not None and topology.frozen_at == 5
    assert freeze_if_due(topology, config, 6) is None  # already frozen
    resumed = learned(3)  # same logits: a resumed run recomputes the same matrix
    assert freeze_if_due(resumed, config, 9) is not None
    assert torch.equal(resumed.matrix(), topology.matrix()) and resumed.frozen_at == 5
    assert freeze_if_due(learned(3), TopologyConfig(), 100) is None  # freeze_at 0: never
    assert freeze_if_due(UniformTopology(3, reference_backend), config, 9) is None


CONFIG = REPO / "configs/quickstart.yaml"
BAD = {
    "kind": (["topology.kind=uniform", "topology.freeze_at=5"], "topology.freeze_at"),
    "after the run": (["topology.freeze_at=201"], "topology.freeze_at"),
    "prune without freeze": (["topology.prune=top_k"], "topology.prune"),
    "prune mode": (["topology.freeze_at=5", "topology.prune=half"], "topology.prune"),
    "prune_k": (["topology.prune_k=0"], "topology.prune_k"),
    "prune_mass": (["topology.prune_mass=1.5"], "topology.prune_mass"),
}


@pytest.mark.parametrize("overrides, key", BAD.values(), ids=BAD.keys())
def test_bad_freeze_settings_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIG, overrides)
    assert caught.value.key == key


def test_a_frozen_model_trains_its_blocks_only() -> None:
    config = load_config(
        CONFIG, ["data.seq_len=16", "topology.freeze_at=1", "topology.prune=top_k"]
    )
    model = build_model(config, vocab_size=32)
    freeze_if_due(model.topology, config.topology, 1)
    tokens = torch.randint(0, 32, (2, 17))
    model(tokens[:, :-1], tokens[:, 1:]).backward()
    assert model.topology.logits.grad is None
    assert all(p.grad is not None for n, p in model.named_parameters() if n != "topology.logits")
