"""Single-device model code: Llama blocks wired by a learnable topology."""

from ancre.model.kinds import build_topology
from ancre.model.presets import PRESETS, ModelShape, resolve_shape
from ancre.model.topology import (
    AncreTopology,
    FixedTopology,
    Topology,
    UniformTopology,
    parse_edges,
)
from ancre.model.transformer import Transformer, build_model, check_buildable

__all__ = [
    "PRESETS",
    "AncreTopology",
    "FixedTopology",
    "ModelShape",
    "Topology",
    "Transformer",
    "UniformTopology",
    "build_model",
    "build_topology",
    "check_buildable",
    "parse_edges",
    "resolve_shape",
]
