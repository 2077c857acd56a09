"""How many bytes the topology mix must move, and how long that takes at least.

The mix does almost no arithmetic (L(L+1)/2 weighted adds per token and feature), so
its time is bounded by memory traffic. For L blocks and S bytes per state (tokens x
hidden x element size), the fused kernels of ``ancre.kernels.mix_triton`` move:

- forward, block j: y_j and h_0 .. h_j read, h_{j+1} written: (j + 3) S; over the
  blocks, sum_j (j + 3) S = (L(L+1)/2 + 2L) S;
- backward, column c of the column scheme: h_c, its incoming gradient (c >= 1), the
  gradients G_{c+1} .. G_L read and G_c written: (L - c + 3) S for c >= 1 and (L + 2) S
  for the embeddings; over the columns about as much as the forward, plus L + 2 passes.

A lower bound on time is bytes / HBM bandwidth. ancre recomputes block internals
(``train.recompute``) but keeps the states the mix reads, so the mix
runs once per step; a design that recomputed whole layers would run the forward mix
twice (``recompute_mix``), which the model can show too.
"""

from __future__ import annotations

from dataclasses import dataclass

HBM_BYTES_PER_S = {"A100": 2.039e12, "H100": 3.35e12, "H200": 4.8e12}
"""Nominal HBM bandwidth of the SXM parts (80 GB A100, H100, 141 GB H200)."""


@dataclass(frozen=True)
class MixTraffic:
    """Bytes the mix moves in one micro-batch's forward and backward.

    Attributes:
        forward: Bytes of the forward mixes of all blocks (twice with whole-layer recompute).
        backward: Bytes of the column backward.
    """

    forward: int
    backward: int

    @property
    def total(self) -> int:
        """Forward and backward together."""
        return self.forward + self.backward

    def seconds(self, device: str) -> float:
        """The lower bound on time at a device's nominal HBM bandwidth."""
        return self.total / HBM_BYTES_PER_S[device]


def mix_traffic(
    num_layers: int, tokens: int, hidden: int, element_bytes: int = 2, recompute_mix: bool = False
) -> MixTraffic:
    """The bytes of the fused mix for one micro-batch.

    Args:
        num_layers: L.
        tokens: Tokens of the micro-batch (batch x sequence length).
        hidden: D.
        element_bytes: 2 for bf16 states, 4 for fp32.
        recompute_mix: The forward mix runs again in the backward (whole-layer recompute).

    Returns:
        The traffic.
    """
    state = tokens * hidden * element_bytes
    forward = sum(j + 3 for j in range(num_layers)) * state
    backward = (sum(num_layers - c + 3 for c in range(1, num_layers + 1)) + num_layers + 2) * state
    return MixTraffic(forward * (2 if recompute_mix else 1), backward)


def grouped_traffic(
    num_layers: int,
    tokens: int,
    hidden: int,
    element_bytes: int = 2,
    group: int | None = None,
    recompute_mix: bool = False,
) -> tuple[MixTraffic, int]:
    """The bytes of the grouped fused mix (``ancre.kernels.grouped_triton``), and its G.

    Args:
        num_layers: L.
        tokens: Tokens of the micro-batch.
        hidden: D.
        element_bytes: 2 for bf16 states, 4 for fp32 (partial rows are fp32).
        group: G; None: :func:`best_group`.
        recompute_mix: The forward mix runs again in the backward.
    """
    partial = 4 / element_bytes
    group = best_group(num_layers, partial) if group is None else group
    forward, backward = grouped_passes(num_layers, group, partial)
    state = tokens * hidden * element_bytes
    traffic = MixTraffic(
        round(forward * state) * (2 if recompute_mix else 1), round(backward * state)
    )  # fmt: skip
    return traffic, group


def row_passes(num_layers: int) -> tuple[int, int]:
    """State passes of the row-by-row fused mix (forward, backward), as above."""
    forward = sum(j + 3 for j in range(num_layers))
    backward = sum(num_layers - c + 3 for c in range(1, num_layers + 1)) + num_layers + 2
    return forward, backward


def grouped_passes(num_layers: int, group: int, partial: float = 1.0) -> tuple[float, float]:
    """State passes of the grouped mix (``ancre.kernels.grouped``), forward and backward.

    One pass moves one state's bytes; a partial-sum row is kept in fp32 and costs
    ``partial`` passes (2 for bf16 states, 1 for fp32).

    Forward, per group of G' rows starting at g0: g0 + 1 states read and G' partial rows
    written; per block j: y_j, its partial row and its j - g0 in-group states read, h_{j+1}
    written. Backward, per group of columns c0 .. c1-1: the R = L - c1 rows beyond it
    read once and G' far rows written; per column c: its incoming gradient, its far row,
    the state h_c and its in-group rows read, G_c written.

    Args:
        num_layers: L.
        group: G, rows per group (1: every row is its own group).
        partial: Passes per fp32 partial row.

    Returns:
        (forward, backward) passes.
    """
    L = num_layers
    forward = 0.0
    for start in range(0, L, group):
        rows = min(group, L - start)
        forward += start + 1 + rows * partial
        forward += sum(2 + partial + (j - start) for j in range(start, start + rows))
    backward = 0.0
    for c0 in range(0, L + 1, group):
        c1 = min(c0 + group, L + 1)
        far = max(L - c1, 0)
        if far:
            backward += far + (c1 - c0) * (1 + partial)  # the rows, the states, far rows
        for c in range(c0, c1):
            own = max(min(c1, L) - c, 0)
            backward += (c > 0) + (partial if far else 0) + 2 + own
    return forward, backward


def best_group(num_layers: int, partial: float = 1.0) -> int:
    """The group size G with the least traffic of :func:`grouped_passes` (ties: smaller G)."""
    return min(
        range(1, num_layers + 1),
        key=lambda group: (sum(grouped_passes(num_layers, group, partial)), group),
    )


SPARSE_PASSES_PER_EDGE = 7
"""State passes per kept edge of the sparse mix of a frozen, pruned matrix (one eager
weighted add per state: 4 passes forward, 3 backward; ``ancre.kernels.reference.lean_mix``)."""


def sparse_is_cheaper(num_layers: int, kept_edges: int) -> bool:
    """Whether reading each kept state on its own moves less than the dense grouped mix."""
    dense = sum(grouped_passes(num_layers, best_group(num_layers)))
    return SPARSE_PASSES_PER_EDGE * kept_edges <= dense
