"""``fixed``: frozen edges i:j (weight 1, or i:j@w), parsed from ``topology.edges``.

Two named patterns stand for edge lists that depend on the depth L, the cheap wirings of
the modded-nanogpt speedrun in ancre's terms (docs/topologies.md), meant with
``topology.form: gated`` (each block's learned gate g_j, 0 at step 0, weighs its row):

- ``x0``: the embeddings into every block's input, 0:j for j = 1 .. L-1; gated, block j
  reads ``h_j = y_{j-1} + g_{j-1} h_0``, the speedrun's ``x <- l1 x + l2 x_0`` with l1 = 1;
- ``unet``: the speedrun's encoder-decoder skips, the output of block L/2 - 1 - m into the
  input of block L/2 + m, (L/2 - m):(L/2 + m) for m = 1 .. L/2 - 1 (L even, at least 4).
"""

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


def pattern_edges(name: str, num_layers: int) -> list[tuple[int, int, float]] | None:
    """The edges of a named pattern (see the module) for L layers, or None for no pattern.

    Raises:
        ConfigError: ``unet`` with an odd L or fewer than 4 layers.
    """
    if name == "x0":
        return [(0, j, 1.0) for j in range(1, num_layers)]
    if name != "unet":
        return None
    if num_layers % 2 or num_layers < 4:
        raise ConfigError(
            "topology.edges",
            f"unet pairs the first and second halves of the blocks: it needs an even number "
            f"of at least 4, and model.num_layers is {num_layers}",
        )
    half = num_layers // 2
    return [(half - m, half + m, 1.0) for m in range(1, half)]


def parse_edges(text: str, num_layers: int) -> list[tuple[int, int, float]]:
    """Parses ``topology.edges`` ("0:2,2:3", "0:2@0.5,...", or a pattern) for L layers.

    Args:
        text: Comma-separated edges i:j or i:j@weight, or the name of a pattern
            (``x0``, ``unet``).
        num_layers: L; an edge may go from 0..L-1 to 1..L, forwards only.

    Returns:
        (source i, target j, weight) triples.

    Raises:
        ConfigError: An edge is malformed, points backwards, or goes past layer L; a
            pattern that this depth does not allow.
    """
    pattern = pattern_edges(text.strip(), num_layers)
    if pattern is not None:
        return pattern
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
