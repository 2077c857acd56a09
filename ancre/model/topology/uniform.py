"""``uniform``: every block adds the plain average of the states before it (frozen)."""

from __future__ import annotations

import torch

from ancre.config import TopologyConfig
from ancre.kernels import MixBackend
from ancre.kernels.reference import accumulation_dtype
from ancre.model.topology.base import Topology


class UniformTopology(Topology):
    """Every block adds the plain average of the states before it: P[j, i] = 1/(j+1)."""

    parameterisation = "uniform"
    FORMULA = "h_{j+1} = y_j + sum_{i<=j} h_i / (j+1)"
    MATRIX = "P[j, i] = 1 / (j+1)"
    OPTIONS = ("form",)

    def __init__(self, num_layers: int, mix: MixBackend, form: str = "additive") -> None:
        super().__init__(num_layers, mix, form)
        rows = torch.arange(1, num_layers + 1, dtype=torch.float32).unsqueeze(1)  # (L, 1)
        uniform = torch.ones(num_layers, num_layers + 1).tril() / rows  # (L, L+1)
        self.register_buffer("uniform", uniform, persistent=False)

    @classmethod
    def from_config(
        cls, config: TopologyConfig, num_layers: int, mix: MixBackend, hidden_size: int, eps: float
    ) -> UniformTopology:
        """Reads ``topology.form``."""
        return cls(num_layers, mix, config.form)

    def weights(self) -> torch.Tensor:
        """The frozen (L, L+1) uniform matrix."""
        return self.uniform.to(accumulation_dtype(self.uniform.dtype))
