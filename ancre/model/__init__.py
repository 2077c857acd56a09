"""Single-device model code: Llama blocks wired by a learnable topology."""

from ancre.model.presets import PRESETS, ModelShape, resolve_shape
from ancre.model.topology import (
    AncreTopology,
    FixedTopology,
    Topology,
    UniformTopology,
    freeze_due,
    freeze_if_due,
    parse_edges,
)
from ancre.model.topology.freeze import FrozenWiring, prune_matrix
from ancre.model.topology.kinds import build_topology
from ancre.model.transformer import Transformer, build_model, check_buildable, whole_numel

__all__ = [
    "PRESETS",
    "AncreTopology",
    "FixedTopology",
    "FrozenWiring",
    "ModelShape",
    "Topology",
    "Transformer",
    "UniformTopology",
    "build_model",
    "build_topology",
    "check_buildable",
    "freeze_due",
    "freeze_if_due",
    "parse_edges",
    "prune_matrix",
    "resolve_shape",
    "whole_numel",
]
