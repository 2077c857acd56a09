"""Per-block statistics of a connection matrix, and their CSV over snapshots.

For block j (row j of P, the weights on h_0 .. h_j):

- predecessor weight P[j, j]: the weight on the block's own input (the plain residual);
- embedding weight P[j, 0]: the weight on the token embeddings;
- row entropy -sum_i q_i log q_i (nats) of the row normalised by its sum of absolute
  values (the row itself for softmax and uniform rows); NaN for an all-zero row;
  at most log(j + 1), reached by the uniform row;
- mean source distance sum_i P[j, i] * (j - i): how far back the block reads,
  0 when it reads only its own input.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ancre.snapshot import TopologySnapshot

STATISTICS = ("predecessor_weight", "embedding_weight", "entropy", "mean_source_distance")
LABELS = {
    "predecessor_weight": "weight on predecessor P[j, j]",
    "embedding_weight": "weight on embeddings P[j, 0]",
    "entropy": "row entropy (nats)",
    "mean_source_distance": "mean source distance",
}
CSV_COLUMNS = ("step", "tokens", "block", *STATISTICS)


@dataclass(frozen=True)
class BlockStatistics:
    """Statistics of every block of one matrix; each array has shape (L,)."""

    predecessor_weight: np.ndarray
    embedding_weight: np.ndarray
    entropy: np.ndarray
    mean_source_distance: np.ndarray

    def get(self, name: str) -> np.ndarray:
        """The array of one statistic, by its name in ``STATISTICS``."""
        return getattr(self, name)


def as_matrix(matrix: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The connection matrix as a float64 array of shape (L, L+1)."""
    array = np.asarray(matrix, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != array.shape[0] + 1:
        raise ValueError(f"a connection matrix is L x (L+1), got shape {array.shape}")
    return array


def row_entropy(row: np.ndarray) -> float:
    """Entropy (nats) of a row normalised by its sum of absolute values; NaN if all zero."""
    weights = np.abs(row)
    total = weights.sum()
    if total <= 0.0:
        return float("nan")
    q = weights[weights > 0.0] / total
    return float(-(q * np.log(q)).sum())


def block_statistics(matrix: Sequence[Sequence[float]] | np.ndarray) -> BlockStatistics:
    """Computes the per-block statistics of a connection matrix.

    Args:
        matrix: P, shape (L, L+1), zeros above the diagonal.

    Returns:
        The statistics, one entry per block.
    """
    p = as_matrix(matrix)  # (L, L+1)
    num_layers = p.shape[0]
    blocks = np.arange(num_layers)
    distance = blocks[:, None] - np.arange(num_layers + 1)[None, :]  # (L, L+1): j - i
    lower = distance >= 0
    return BlockStatistics(
        predecessor_weight=p[blocks, blocks].copy(),
        embedding_weight=p[:, 0].copy(),
        entropy=np.array([row_entropy(p[j, : j + 1]) for j in blocks]),
        mean_source_distance=(p * np.where(lower, distance, 0)).sum(axis=1),
    )


def statistics_rows(snapshots: Sequence[TopologySnapshot]) -> list[dict]:
    """One dict per (snapshot, block) with the columns of ``CSV_COLUMNS``."""
    rows = []
    for snapshot in snapshots:
        stats = block_statistics(snapshot.matrix)
        for j in range(snapshot.num_layers):
            row = {"step": snapshot.step, "tokens": snapshot.tokens, "block": j}
            row.update({name: float(stats.get(name)[j]) for name in STATISTICS})
            rows.append(row)
    return rows


def write_statistics_csv(snapshots: Sequence[TopologySnapshot], path: str | Path) -> Path:
    """Writes the per-block statistics of every snapshot (step x block) as CSV.

    Returns:
        The path written. Missing values (entropy of an all-zero row) are empty cells.
    """
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in statistics_rows(snapshots):
            writer.writerow({k: "" if v != v else v for k, v in row.items()})  # NaN -> ""
    return path
