"""Learn, then freeze: the learned connection matrix fixed at a step, optionally pruned.

At ``topology.freeze_at`` the softmax matrix P = softmax(theta / tau) of an Ancre
topology is fixed. ``topology.prune`` then keeps, in each row, only its largest entries:

- ``none``: every entry (all j+1 of row j, unless one underflowed to zero);
- ``top_k``: the ``topology.prune_k`` largest;
- ``mass``: the fewest largest whose sum reaches ``topology.prune_mass`` of the row's.

The kept entries are renormalised to sum to one. From then on block j reads only the
states of its kept edges, with the frozen weights as constants: the mix costs O(kept
edges) instead of O(L^2) and computes no gradient for the matrix (in the gated form
the gates g_j are fixed with it). Ties go to the
earlier state (a stable sort), so the result depends on the logits alone and a resumed
run recomputes exactly the matrix an uninterrupted run froze.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ancre.config import PRUNE_MODES
from ancre.kernels import MixBackend, Mixer
from ancre.kernels.reference import lean_mix
from ancre.kernels.traffic import sparse_is_cheaper


def prune_matrix(matrix: torch.Tensor, mode: str, k: int = 1, mass: float = 1.0) -> torch.Tensor:
    """Keeps the largest entries of each row of P, renormalised to sum to one.

    Args:
        matrix: The (L, L+1) connection matrix, zero above the diagonal.
        mode: ``none``, ``top_k`` or ``mass``.
        k: With ``top_k``: entries kept per row (a row with fewer keeps them all).
        mass: With ``mass``: the fraction of each row's sum the kept entries reach.

    Returns:
        The pruned (L, L+1) matrix (fp32 or wider); a row of zeros stays zero.

    Raises:
        ValueError: An unknown mode, k < 1 or mass outside (0, 1].
    """
    if mode not in PRUNE_MODES:
        raise ValueError(f"prune mode {mode!r}; allowed: {', '.join(PRUNE_MODES)}")
    if k < 1 or not 0.0 < mass <= 1.0:
        raise ValueError(f"prune needs k >= 1 and 0 < mass <= 1, got k={k}, mass={mass}")
    wide = torch.promote_types(matrix.dtype, torch.float32)
    out = torch.zeros_like(matrix, dtype=wide)  # (L, L+1)
    for j, row in enumerate(matrix.to(wide)):
        values = row[: j + 1]  # (j+1,)
        order = torch.argsort(values, descending=True, stable=True)  # (j+1,)
        ranked = values[order]
        if mode == "none":
            count = j + 1
        elif mode == "top_k":
            count = min(k, j + 1)
        else:
            reached = ranked.cumsum(0) >= mass * ranked.sum() * (1 - 1e-6)  # (j+1,)
            count = int(reached.int().argmax()) + 1 if bool(reached.any()) else j + 1
        keep = order[:count][ranked[:count] > 0]
        total = values[keep].sum()
        if keep.numel() and total > 0:
            out[j, keep] = values[keep] / total
    return out


@dataclass(frozen=True)
class FrozenWiring:
    """A fixed, possibly pruned connection matrix and the edges it keeps.

    Attributes:
        matrix: The (L, L+1) matrix (rows sum to one over the kept edges).
        edges: For each block j, the states i (0 = the embeddings) it reads, ascending.
        values: The mix weights W of the kept edges row after row, (number of mixed
            states,), for the mix (``ancre.model.topology.forms``; in the gated form, before g_j).
        offsets: Row j's weights are ``values[offsets[j]:offsets[j + 1]]``.
        form: The topology's form.
        mixed: For each block j, the states its mix reads: the kept edges, and in the
            replace form h_j too (its weight P[j, j] - 1).
    """

    matrix: torch.Tensor
    edges: tuple[tuple[int, ...], ...]
    values: torch.Tensor
    offsets: tuple[int, ...]
    form: str = "additive"
    mixed: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def of(cls, matrix: torch.Tensor, form: str = "additive") -> FrozenWiring:
        """The wiring of a (pruned) matrix: its non-zero entries are the kept edges."""
        matrix = matrix.detach()
        edges = tuple(
            tuple(int(i) for i in torch.nonzero(row[: j + 1]).flatten())
            for j, row in enumerate(matrix)
        )
        weights = matrix.clone()
        mixed = edges
        if form == "replace":  # W = P - E: every block also reads h_j, with P[j, j] - 1
            weights[torch.arange(len(edges)), torch.arange(len(edges))] -= 1.0
            mixed = tuple(tuple(sorted({*row, j})) for j, row in enumerate(edges))
        offsets = [0]
        for row in mixed:
            offsets.append(offsets[-1] + len(row))
        values = torch.cat(
            [weights[j, list(row)] for j, row in enumerate(mixed)] or [matrix.new_zeros(0)]
        )  # (mixed states,)
        return cls(matrix, edges, values, tuple(offsets), form, mixed)

    @property
    def num_edges(self) -> int:
        """How many entries of the matrix are kept."""
        return self.offsets[-1]

    def to(self, device: torch.device) -> FrozenWiring:
        """The same wiring with its tensors on ``device``."""
        return FrozenWiring(
            self.matrix.to(device), self.edges, self.values.to(device), self.offsets,
            self.form, self.mixed,
        )  # fmt: skip

    def dense_weights(self, gates: torch.Tensor | None = None) -> torch.Tensor:
        """The (L, L+1) mix weights W of the kept edges, zero elsewhere (gated: times g_j)."""
        rows = [j for j, row in enumerate(self.mixed or self.edges) for _ in row]
        cols = [i for row in (self.mixed or self.edges) for i in row]
        num_layers = len(self.edges)
        weights = self.values.new_zeros(num_layers, num_layers + 1)
        weights[rows, cols] = self.values
        if self.form == "gated" and gates is not None:
            weights = gates.to(weights.dtype).unsqueeze(1) * weights  # (L, L+1)
        return weights

    def mixer(self, gates: torch.Tensor | None = None, backend: MixBackend | None = None) -> Mixer:
        """h_{j+1} = y_j + sum over the mixed states i of W[j, i] h_i (constant W).

        Args:
            gates: (L,) g_j of the gated form, which multiply row j (and learn).
            backend: The model's mix backend, used for the whole frozen matrix when it
                keeps so many edges that the backend's dense mix moves less memory than
                reading each kept state on its own (``ancre.kernels.traffic``); None
                always reads the kept states alone.
        """
        mixed = self.mixed or self.edges
        if backend is not None and not sparse_is_cheaper(len(mixed), self.num_edges):
            return backend(self.dense_weights(gates))

        def mix(j: int, y: torch.Tensor, states: Sequence[torch.Tensor]) -> torch.Tensor:
            kept = mixed[j]
            if not kept:
                return y
            weights = self.values[self.offsets[j] : self.offsets[j + 1]]  # (states of row j,)
            if self.form == "gated" and gates is not None:
                weights = gates[j].to(weights.dtype) * weights
            return lean_mix(y, [states[i] for i in kept], weights)  # (..., D)

        return mix
