"""Builders of the visualiser tests: connection matrices, snapshots, metrics records."""

from __future__ import annotations

import numpy as np

from ancre.snapshot import LEGACY_FORMULAS, TopologySnapshot


def softmax_matrix(num_layers: int, seed: int = 0, scale: float = 2.0) -> list[list[float]]:
    """A random L x (L+1) matrix whose rows are softmaxes over 0..j."""
    rng = np.random.default_rng(seed)
    matrix = np.zeros((num_layers, num_layers + 1))
    for j in range(num_layers):
        logits = rng.normal(scale=scale, size=j + 1)
        weights = np.exp(logits - logits.max())
        matrix[j, : j + 1] = weights / weights.sum()
    return matrix.tolist()


def make_snapshot(
    matrix: list[list[float]], step: int = 100, kind: str = "softmax"
) -> TopologySnapshot:
    num_layers = len(matrix)
    logits = [[0.0] * (j + 1) for j in range(num_layers)] if kind == "softmax" else None
    return TopologySnapshot(
        step=step,
        tokens=step * 2048,
        num_layers=num_layers,
        parameterisation=kind,
        temperature=0.01 if kind == "softmax" else None,
        logits=logits,
        matrix=matrix,
        formula=LEGACY_FORMULAS[kind],  # the strings the kinds write
    )


def metrics_lines(steps: list[int], start: float = 7.0, rate: float = 0.01) -> list[dict]:
    """Training and eval records of a loss decaying as start * exp(-rate * step)."""
    records = []
    for step in steps:
        loss = float(start * np.exp(-rate * step))
        records.append({"step": step, "tokens": step * 2048, "loss": loss, "lr": 1e-3})
        records.append({"step": step, "tokens": step * 2048, "val_loss": loss + 0.1})
    return records
