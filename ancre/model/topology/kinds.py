"""The one table of topology kinds, and the builder of the kind ``topology.kind`` names.

A kind is its class (``ancre.model.topology``: the formula it writes into its
snapshots, the options it reads, how it is built from the config) and a row of
:data:`KINDS` (whether it needs the hidden size, whether the Hugging Face export
computes it). Adding a kind is a module of its own, a row here, and its name and
options in ``ancre/config/topology.py`` (the config imports no model code; a test
holds the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass

from ancre.config import TopologyConfig
from ancre.kernels import select_mix
from ancre.model.topology.base import Topology
from ancre.model.topology.fixed import FixedTopology
from ancre.model.topology.softmax import AncreTopology
from ancre.model.topology.uniform import UniformTopology
from ancre.model.topology.zoo.attnres import AttentionResidualTopology
from ancre.model.topology.zoo.denseformer import DenseFormerTopology
from ancre.model.topology.zoo.frac import FracTopology
from ancre.model.topology.zoo.hyper import HyperTopology
from ancre.model.topology.zoo.mhc import ManifoldHyperTopology
from ancre.model.topology.zoo.mudd import MultiwayDenseTopology


@dataclass(frozen=True)
class Kind:
    """One row of the table of kinds.

    Attributes:
        topology: The class (its ``from_config``, ``FORMULA`` and ``OPTIONS``).
        needs_width: Its parameters depend on the hidden size D.
        exportable: The exported modeling code (``ancre convert --format hf``) computes it.
    """

    topology: type[Topology]
    needs_width: bool = False
    exportable: bool = False


KINDS: dict[str, Kind] = {
    "cascaded": Kind(Topology, exportable=True),
    "ancre": Kind(AncreTopology, exportable=True),
    "uniform": Kind(UniformTopology, exportable=True),
    "fixed": Kind(FixedTopology, exportable=True),
    "denseformer": Kind(DenseFormerTopology, exportable=True),
    "hyper": Kind(HyperTopology, needs_width=True, exportable=True),
    "mhc": Kind(ManifoldHyperTopology, needs_width=True, exportable=True),
    "attnres": Kind(AttentionResidualTopology, needs_width=True, exportable=True),
    "mudd": Kind(MultiwayDenseTopology, needs_width=True),
}
"""Every ``topology.kind``: the kinds of docs/method.md, then those of other papers."""


def build_topology(
    config: TopologyConfig, num_layers: int, hidden_size: int | None = None, eps: float = 1e-5
) -> Topology:
    """Builds the topology a config names, with its mix backend chosen once, here.

    ``hyper`` with ``topology.fractions`` > 1 is Frac-Connections (``zoo.frac``): hyper's
    row of the table, the options of its config, another class.

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
    kind = KINDS[config.kind]
    if kind.needs_width and hidden_size is None:
        raise ValueError(f"topology.kind={config.kind} needs the hidden size to be built")
    built = kind.topology
    if config.kind == "hyper" and config.fractions > 1:  # hyper below one stream
        built = FracTopology
    topology = built.from_config(config, num_layers, mix, hidden_size or 0, eps)
    topology.mix_backend = backend
    return topology
