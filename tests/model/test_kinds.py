"""What every learned-wiring kind must do: causality, gradients, snapshots, dispatch."""

from dataclasses import fields

import pytest
import torch

from ancre.config import ConfigError, TopologyConfig, load_config
from ancre.config.topology import TOPOLOGY_KINDS, TOPOLOGY_OPTIONS
from ancre.model.topology.effective import method_matrix
from ancre.model.topology.kinds import KINDS, build_topology
from ancre.snapshot import read_snapshot, write_snapshot
from ancre.train.optimizers import parameter_groups
from tests.helpers.zoo_models import VOCAB, ZOO, assert_causal, perturb, tiny_model


@torch.no_grad()
@pytest.mark.parametrize("name", list(ZOO))
def test_changing_a_token_changes_no_earlier_logits(name):
    model = tiny_model(name)
    perturb(model)
    assert_causal(model, VOCAB)


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("name", list(ZOO))
def test_gradients_reach_every_topology_parameter(name, autocast):
    model = tiny_model(name)
    perturb(model)  # zero-initialised dynamic projections would block their gates' gradient
    tokens = torch.randint(0, VOCAB, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    for parameter_name, parameter in model.topology.named_parameters():
        assert parameter.dtype == torch.float32, parameter_name
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", list(ZOO))
def test_snapshot_round_trip_and_what_it_describes(name, tmp_path):
    model = tiny_model(name)
    perturb(model)
    topology = model.topology
    if topology.dynamic:
        with pytest.raises(RuntimeError, match="probe"):
            topology.snapshot(0, 0)
        with topology.recording(), torch.no_grad():
            model(torch.randint(0, VOCAB, (2, 8)))
    snapshot = topology.snapshot(5, 50)
    write_snapshot(snapshot, tmp_path / "s.json")
    back = read_snapshot(tmp_path / "s.json")
    assert back == snapshot and back.formula
    expected = {n for n, _ in topology.named_parameters()}
    if topology.parameterisation == "mudd":  # its static weights and the q, k, v mixes' reads
        expected = {n for n in expected if n.endswith(".static")}
        expected |= {"query_reads", "key_reads", "value_reads"}
    assert set(back.raw) == expected
    assert (back.spread is not None) == topology.dynamic
    assert (back.probe is not None) == topology.dynamic
    # the matrix is the method form of the reads matrix, averaged over the tokens
    reads = torch.tensor(back.reads, dtype=torch.float64)
    if not topology.dynamic:
        matrix, own = method_matrix(reads)
        torch.testing.assert_close(torch.tensor(back.matrix), matrix.float(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(torch.tensor(back.own_output), own.float())
    else:
        assert 0 < max(max(row) for row in back.spread)  # the tokens differ


def test_method_matrix_rewrites_inputs_over_outputs_as_inputs_over_inputs():
    generator = torch.Generator().manual_seed(0)
    reads = torch.randn(5, 5, generator=generator, dtype=torch.float64).tril()
    reads.diagonal().add_(2.0)
    x = torch.randn(5, 3, generator=generator, dtype=torch.float64)  # x_0 .. x_4
    h = reads @ x  # h_i = sum_k R[i, k] x_k
    matrix, own = method_matrix(reads)
    for j in range(4):
        torch.testing.assert_close(h[j + 1], own[j] * x[j + 1] + matrix[j, : j + 1] @ h[: j + 1])
    assert torch.all(matrix.triu(1) == 0)


def test_the_table_of_kinds_and_the_config_name_the_same_kinds_and_options():
    # the config imports no model code: its kinds and per-kind options must match the table
    assert list(KINDS) == list(TOPOLOGY_KINDS)
    for name, kind in KINDS.items():
        read = {key for key, kinds in TOPOLOGY_OPTIONS.items() if name in kinds}
        assert set(kind.topology.OPTIONS) & set(TOPOLOGY_OPTIONS) == read, name
        assert set(kind.topology.OPTIONS) <= {f.name for f in fields(TopologyConfig)}, name
        assert kind.topology.FORMULA, name


def test_dispatch_and_options_of_the_kinds():
    assert build_topology(TopologyConfig(kind="denseformer", dilation=2), 4).dilation == 2
    with pytest.raises(ValueError, match="needs the hidden size"):
        build_topology(TopologyConfig(kind="hyper"), 4)
    with pytest.raises(ConfigError, match="topology.attnres_blocks"):
        build_topology(TopologyConfig(kind="attnres", attnres_blocks=5), 6, 32)
    with pytest.raises(ConfigError, match="topology.streams.*hyper or mhc"):
        load_config(None, ["topology.kind=ancre", "topology.streams=2"])
    with pytest.raises(ConfigError, match="topology.dilation"):
        load_config(None, ["topology.kind=denseformer", "topology.dilation=0"])
    with pytest.raises(ConfigError, match="topology.sinkhorn_iters"):
        load_config(None, ["topology.kind=hyper", "topology.sinkhorn_iters=5"])


@pytest.mark.parametrize("name", ["denseformer", "hyper", "hyper-dynamic", "mhc"])
def test_the_topology_group_holds_every_topology_parameter(name):
    model = tiny_model(name)
    config = load_config(None, ["topology.lr_multiplier=3.0", "train.weight_decay=0.1"])
    groups = {g["name"]: g for g in parameter_groups(model, config)}
    topology = groups["topology"]
    assert {id(p) for p in topology["params"]} == {id(p) for p in model.topology.parameters()}
    assert topology["weight_decay"] == 0.0 and topology["peak_lr"] == 3.0 * config.train.lr
