"""``fixed``: frozen edges i:j (weight 1, or i:j@w), parsed from ``topology.edges``."""

from __future__ import annotations

import torch

from ancre.config import ConfigError, TopologyConfig
from ancre.kernels import MixBackend
from ancre.kernels.reference import accumulation_dtype
from ancre.model.topology.base import Topology


class FixedTopology(Topology):
    """Frozen edges: P[j-1, i] = w for every edge i:j of weight w, zero elsewhere."""

    parameterisation = "fixed"
    FORMULA = "h_{j+1} = y_j + sum_{i<=j} P[j, i] h_i, P from the edges"
    MATRIX = "P from the edges"
    OPTIONS = ("edges", "form")

    def __init__(
        self,
        num_layers: int,
        mix: MixBackend,
        edges: list[tuple[int, int, float]],
        form: str = "additive",
    ) -> None:
        super().__init__(num_layers, mix, form)
        matrix = torch.zeros(num_layers, num_layers + 1)  # (L, L+1)
        for source, target, weight in edges:
            matrix[target - 1, source] += weight
        self.register_buffer("fixed", matrix, persistent=False)
        self.edges = edges

    @classmethod
    def from_config(
        cls, config: TopologyConfig, num_layers: int, mix: MixBackend, hidden_size: int, eps: float
    ) -> FixedTopology:
        """Reads ``topology.edges`` and ``topology.form``."""
        return cls(num_layers, mix, parse_edges(config.edges, num_layers), config.form)

    def weights(self) -> torch.Tensor:
        """The frozen (L, L+1) matrix of the edges."""
        return self.fixed.to(accumulation_dtype(self.fixed.dtype))


def parse_edges(text: str, num_layers: int) -> list[tuple[int, int, float]]:
    """Parses ``topology.edges`` ("0:2,2:3" or "0:2@0.5,...") for a stack of L layers.

    Args:
        text: Comma-separated edges i:j or i:j@weight.
        num_layers: L; an edge may go from 0..L-1 to 1..L, forwards only.

    Returns:
        (source i, target j, weight) triples.

    Raises:
        ConfigError: An edge is malformed, points backwards, or goes past layer L.
    """
    edges = []
    for item in (part.strip() for part in text.split(",")):
        spec, _, weight = item.partition("@")
        source, colon, target = spec.partition(":")
        try:
            edge = (int(source), int(target), float(weight) if weight else 1.0)
        except ValueError:
            raise ConfigError("topology.edges", f"{item!r} is not i:j or i:j@weight") from None
        if not colon:
            raise ConfigError("topology.edges", f"{item!r} is not i:j or i:j@weight")
        if not 0 <= edge[0] < edge[1]:
            raise ConfigError(
                "topology.edges", f"{item!r} points backwards: an edge i:j needs 0 <= i < j"
            )
        if edge[1] > num_layers:
            raise ConfigError("topology.edges", f"{item!r} goes past the last layer ({num_layers})")
        edges.append(edge)
    return edges
