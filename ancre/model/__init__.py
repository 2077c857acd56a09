"""Single-device model code: Llama blocks wired by a learnable topology."""

from ancre.model.presets import PRESETS, ModelShape, resolve_shape
from ancre.model.topology import AncreTopology, Topology, UniformTopology, build_topology
from ancre.model.transformer import IGNORE_INDEX, Transformer, build_model

__all__ = [
    "IGNORE_INDEX",
    "PRESETS",
    "AncreTopology",
    "ModelShape",
    "Topology",
    "Transformer",
    "UniformTopology",
    "build_model",
    "build_topology",
    "resolve_shape",
]
