"""Builds the topology that ``topology.kind`` names, with its mix backend chosen once.

The kinds of docs/method.md live in ``ancre.model.topology``; the wirings of other
papers each in a module of their own (docs/topologies.md).
"""

from __future__ import annotations

from ancre.config import TopologyConfig
from ancre.kernels import select_mix
from ancre.model.attnres import AttentionResidualTopology
from ancre.model.denseformer import DenseFormerTopology
from ancre.model.hyper import HyperTopology
from ancre.model.mhc import ManifoldHyperTopology
from ancre.model.topology import (
    AncreTopology,
    FixedTopology,
    Topology,
    UniformTopology,
    parse_edges,
)

NEEDS_WIDTH = ("hyper", "mhc", "attnres")
"""Kinds whose parameters depend on the hidden size."""


def build_topology(
    config: TopologyConfig, num_layers: int, hidden_size: int | None = None, eps: float = 1e-5
) -> Topology:
    """Builds the topology a config names, with its mix backend chosen once, here.

    Args:
        config: The ``topology`` section.
        num_layers: L, the number of blocks to wire.
        hidden_size: D, for the kinds whose parameters depend on it (hyper, mhc, attnres).
        eps: The model's RMSNorm epsilon, for the kinds that normalise.

    Returns:
        The topology module.

    Raises:
        ConfigError: A topology key that this number of blocks does not allow.
        ValueError: The mix backend cannot run here, or D is missing where it is needed.
    """
    backend, mix = select_mix(config.backend)
    kind = config.kind
    if kind in NEEDS_WIDTH and hidden_size is None:
        raise ValueError(f"topology.kind={kind} needs the hidden size to be built")
    form = config.form
    if kind == "ancre":
        topology: Topology = AncreTopology(
            num_layers, mix, config.temperature, form, config.init, config.predecessor_weight
        )
    elif kind == "uniform":
        topology = UniformTopology(num_layers, mix, form)
    elif kind == "fixed":
        topology = FixedTopology(num_layers, mix, parse_edges(config.edges, num_layers), form)
    elif kind == "denseformer":
        topology = DenseFormerTopology(num_layers, mix, config.dilation, config.period)
    elif kind == "hyper":
        assert hidden_size is not None
        topology = HyperTopology(num_layers, mix, hidden_size, config.streams, config.dynamic, eps)
    elif kind == "mhc":
        assert hidden_size is not None
        topology = ManifoldHyperTopology(
            num_layers, mix, hidden_size, config.streams, config.dynamic, eps,
            config.sinkhorn_iters,
        )  # fmt: skip
    elif kind == "attnres":
        assert hidden_size is not None
        topology = AttentionResidualTopology(
            num_layers, mix, hidden_size, config.attnres_blocks, eps
        )
    else:
        topology = Topology(num_layers, mix)
    topology.mix_backend = backend
    return topology
