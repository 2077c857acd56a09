"""How the mix of earlier states enters the residual stream: the forms of ``topology.form``.

Block j reads h_j and returns y_j = Block_j(h_j), which holds h_j through the block's
own inner residuals; u_j = y_j - h_j is the block's update. With P the L x (L+1)
connection matrix (rows sum to one for ancre and uniform)::

    additive  h_{j+1} = y_j + sum_i P[j, i] h_i          (the paper's)
    replace   h_{j+1} = u_j + sum_i P[j, i] h_i           (P one-hot on h_j: the plain residual)
    gated     h_{j+1} = y_j + g_j sum_i P[j, i] h_i       (g_j learned, 0 at step 0)

In the additive form every row adds a whole unit of earlier states on top of the
block's own h_j, so the stream roughly doubles per block: the RMS of h_L grows
geometrically with depth. In the replace form the stream is an average of earlier
states plus the update, as bounded as the plain residual's. The gated form starts as
the plain residual exactly and lets each block learn how much of the mix to add.

Every form is the additive mix with other weights, h_{j+1} = y_j + sum_i W[j, i] h_i:
W = P (additive), W = P - E with E[j, j] = 1 (replace) or W = diag(g) P (gated). The
mix backends (the reference path and the fused kernels) compute W, so every form runs
through them unchanged, and W is what an exported model computes.
"""

from __future__ import annotations

import math

import torch

FORMS = ("additive", "replace", "gated")
FORMULAS = {
    "additive": "h_{j+1} = y_j + sum_{i<=j} P[j, i] h_i",
    "replace": "h_{j+1} = (y_j - h_j) + sum_{i<=j} P[j, i] h_i",
    "gated": "h_{j+1} = y_j + g_j sum_{i<=j} P[j, i] h_i  (g_j learned, 0 at step 0)",
}
"""The formula of each form, for snapshots, reports and model cards."""


def mix_weights(matrix: torch.Tensor, form: str, gates: torch.Tensor | None) -> torch.Tensor:
    """The weights W of the additive mix that computes a form (see the module).

    Args:
        matrix: The (L, L+1) connection matrix P (fp32 or wider), zero above the diagonal.
        form: ``additive``, ``replace`` or ``gated``.
        gates: (L,) g_j of the gated form; ignored by the others.

    Returns:
        The (L, L+1) weights W, differentiable in P and the gates.

    Raises:
        ValueError: An unknown form, or the gated form without gates.
    """
    if form == "additive":
        return matrix
    if form == "replace":
        n = matrix.shape[0]
        shift = torch.eye(n, n + 1, dtype=matrix.dtype, device=matrix.device)  # (L, L+1)
        return matrix - shift
    if form == "gated":
        if gates is None:
            raise ValueError("the gated form needs its gates")
        return gates.to(matrix.dtype).unsqueeze(1) * matrix  # (L, L+1)
    raise ValueError(f"topology.form={form!r}; allowed: {', '.join(FORMS)}")


def predecessor_logits(num_layers: int, temperature: float, weight: float) -> torch.Tensor:
    """Logits theta_1 .. theta_{L-1} (flat, row after row) whose softmax puts ``weight`` on h_j.

    Row j (j >= 1) of P = softmax(theta_j / tau) gets P[j, j] = weight and
    (1 - weight) / j on each earlier state: theta_j[i] = tau log P[j, i]. theta_0 (one
    entry, P[0, 0] = 1) is not learnable and not included.

    Args:
        num_layers: L.
        temperature: tau.
        weight: P[j, j], in (0, 1).

    Returns:
        (L(L+1)/2 - 1,) fp32 logits.
    """
    rows = []
    for j in range(1, num_layers):
        row = torch.full((j + 1,), temperature * math.log((1.0 - weight) / j))
        row[j] = temperature * math.log(weight)
        rows.append(row)
    return torch.cat(rows) if rows else torch.zeros(0)


def stream_reads(weights: torch.Tensor) -> torch.Tensor:
    """The reads matrix R of the mix h_{j+1} = y_j + sum_i W[j, i] h_i (``effective``).

    Row k of R holds the input of block k (row L: the final state) over x_0 (the
    embeddings) and the block outputs x_{i+1} = y_i: h_0 = x_0 and
    h_{j+1} = x_{j+1} + sum_i W[j, i] h_i.

    Args:
        weights: The (L, L+1) mix weights W.

    Returns:
        The (L+1, L+1) lower-triangular R, in W's dtype.
    """
    n = weights.shape[0]
    reads = torch.zeros(n + 1, n + 1, dtype=weights.dtype, device=weights.device)
    reads[0, 0] = 1.0
    for j in range(n):
        row = weights[j, : j + 1] @ reads[: j + 1]  # (L+1,)
        row[j + 1] += 1.0
        reads[j + 1] = row
    return reads
