"""``ancre``: learned rows P[j] = softmax(theta_j / tau), and their freeze at freeze_at."""

from __future__ import annotations

import torch
from torch import nn

from ancre.config import TopologyConfig
from ancre.kernels import MixBackend
from ancre.kernels.reference import accumulation_dtype
from ancre.model.topology.base import Topology
from ancre.model.topology.forms import predecessor_logits
from ancre.model.topology.freeze import FrozenWiring, prune_matrix


class AncreTopology(Topology):
    """Learned rows: P[j, :j+1] = softmax(theta_j / tau), theta zero at initialisation.

    The learnable logits are one flat fp32 parameter holding theta_1 .. theta_{L-1}
    row after row (L(L+1)/2 - 1 numbers: 299 at L = 24); theta_0 is the frozen 0.
    With ``init="predecessor"`` row j starts with ``predecessor_weight`` on h_j and the
    rest shared equally (``ancre.model.topology.forms.predecessor_logits``).
    """

    parameterisation = "softmax"
    FORMULA = "h_{j+1} = y_j + sum_{i<=j} softmax(theta_j / tau)_i h_i"
    MATRIX = "P[j] = softmax(theta_j / tau)"
    OPTIONS = (
        "temperature", "form", "init", "predecessor_weight", "freeze_at", "prune", "prune_k",
        "prune_mass",
    )  # fmt: skip

    def __init__(
        self,
        num_layers: int,
        mix: MixBackend,
        temperature: float,
        form: str = "additive",
        init: str = "uniform",
        predecessor_weight: float = 0.9,
    ) -> None:
        super().__init__(num_layers, mix, form)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if init not in ("uniform", "predecessor"):
            raise ValueError(f"topology.init={init!r}; allowed: uniform, predecessor")
        self.temperature = temperature
        self.init = init
        num_entries = num_layers * (num_layers + 1) // 2
        logits = torch.zeros(num_entries - 1, dtype=torch.float32)
        if init == "predecessor":
            logits = predecessor_logits(num_layers, temperature, predecessor_weight)
        self.logits = nn.Parameter(logits)
        rows, cols = torch.tril_indices(num_layers, num_layers + 1)  # row-major, i <= j
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    @classmethod
    def from_config(
        cls, config: TopologyConfig, num_layers: int, mix: MixBackend, hidden_size: int, eps: float
    ) -> AncreTopology:
        """Reads the temperature, the form and the initial rows (the freeze: later)."""
        return cls(
            num_layers, mix, config.temperature, config.form, config.init,
            config.predecessor_weight,
        )  # fmt: skip

    def _all_logits(self) -> torch.Tensor:
        """theta_0 (frozen 0) followed by the learnable logits, at least fp32, (L(L+1)/2,)."""
        logits = self.logits.to(accumulation_dtype(self.logits.dtype))
        return torch.cat([logits.new_zeros(1), logits])

    def weights(self) -> torch.Tensor:
        """The (L, L+1) softmax matrix (fp32 or wider), differentiable in the logits.

        Once frozen, the constant frozen matrix.
        """
        if self.wiring is not None:
            return self.wiring.matrix
        with torch.autocast(device_type=self.logits.device.type, enabled=False):
            n = self.num_layers
            logits = self._all_logits()  # (L(L+1)/2,)
            scores = logits.new_full((n, n + 1), float("-inf"))
            scores = scores.index_put((self.rows, self.cols), logits)  # (L, L+1)
            return torch.softmax(scores / self.temperature, dim=-1)  # (L, L+1), zero above diag

    def freeze(self, step: int, prune: str = "none", k: int = 1, mass: float = 1.0) -> FrozenWiring:
        """Fixes the matrix at its current value, pruned (``ancre.model.topology.freeze``).

        The logits (and the gated form's gates) stop requiring gradients; the forward
        pass reads only the kept edges.
        Call it after the model has moved to its device.

        Args:
            step: The step the matrix is frozen at (written into snapshots).
            prune: ``none``, ``top_k`` or ``mass``.
            k: Entries kept per row with ``top_k``.
            mass: Fraction of each row kept with ``mass``.

        Returns:
            The frozen wiring.
        """
        with torch.no_grad():
            matrix = prune_matrix(self.weights().detach(), prune, k, mass)  # (L, L+1)
        self.wiring = FrozenWiring.of(matrix, self.form)
        self.frozen_at = step
        self.logits.requires_grad_(False)
        if self.gates is not None:
            self.gates.requires_grad_(False)
        return self.wiring

    def logit_rows(self) -> list[torch.Tensor]:
        """theta_0 .. theta_{L-1} as ragged rows."""
        sizes = list(range(1, self.num_layers + 1))
        return list(self._all_logits().detach().split(sizes))

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"{super().extra_repr()}, temperature={self.temperature}"


def freeze_due(topology: Topology, config: TopologyConfig, step: int) -> bool:
    """Whether :func:`freeze_if_due` would freeze now (reads no parameter: no gather)."""
    due = bool(config.freeze_at) and step >= config.freeze_at
    return due and isinstance(topology, AncreTopology) and topology.wiring is None


def freeze_if_due(topology: Topology, config: TopologyConfig, step: int) -> FrozenWiring | None:
    """Freezes (and prunes) an Ancre matrix once ``step`` reaches ``topology.freeze_at``.

    The logits do not change after the freeze, so the matrix recomputed from them at any
    later step (a resumed run, a converted checkpoint) is the one frozen at freeze_at.

    Args:
        topology: The model's topology (its logits whole, not ZeRO-3 partitions).
        config: The ``topology`` section.
        step: Optimiser steps taken.

    Returns:
        The wiring when it froze now, else None (not due, no freeze, already frozen).
    """
    if not freeze_due(topology, config, step):
        return None
    assert isinstance(topology, AncreTopology)
    return topology.freeze(config.freeze_at, config.prune, config.prune_k, config.prune_mass)
