"""DenseFormer: a depth-weighted average of every earlier output after each block.

Pagliardini, Mohtashami, Fleuret, Jaggi, "DenseFormer: Enhancing Information Flow in
Transformers via Depth Weighted Averaging", NeurIPS 2024 (arXiv 2402.02622).

With ``x_0`` the embeddings and ``x_{i} = y_{i-1} = Block_{i-1}(h_{i-1})`` the output of
block i-1 (i = 1 .. L), the input of block i (and, for i = L, what the final norm
reads) is the depth-weighted average (DWA)::

    h_i = sum_{k<=i} alpha_{i,k} x_k                       (DWA after block i-1)

with unconstrained learned weights initialised to the identity (``alpha_{i,i} = 1``,
the others 0), so that at step 0 the model is the plain residual network. The
paper's variants, as ancre reads them:

- dilation k (``topology.dilation``): the DWA at depth i reads only the x_k with
  ``(i - k) % k_dilation == 0`` (the embeddings too when i is a multiple of k);
- period p (``topology.period``): a DWA only at the depths i that are multiples of p;
  elsewhere ``h_i = x_i``.

Written in the form of docs/method.md with the block inputs as states (R the reads
matrix of ``ancre.model.topology.effective``: row 0 = e_0, row i = alpha_i)::

    h_{j+1} = d_j y_j + sum_{k<=j} P[j, k] h_k,   d_j = alpha_{j+1,j+1},
    P = strict_lower(R)[1:] R^{-1}

The mix backend computes ``s_{j+1} = y_j + sum_k (P[j, k] c_k / d_j) s_k`` over the
stored states ``s_k = h_k / c_k`` (c_0 = 1, c_k = d_{k-1}), and block j+1 reads
``d_j s_{j+1}``: so DenseFormer runs on the fused kernels of ``ancre.kernels`` like the
static kinds of ``ancre.model.topology`` (the one extra is that scale, a multiply and
one more stored state per block whose d is learned). P is recomputed from alpha in fp32
every forward pass (an (L+1)-square triangular solve): it needs every d non-zero,
which the identity start gives and training keeps in practice (docs/topologies.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ancre.config import TopologyConfig
from ancre.kernels import MixBackend
from ancre.kernels.reference import accumulation_dtype
from ancre.model.topology.base import Block
from ancre.model.topology.effective import LearnedWiring, method_matrix


def dwa_entries(num_layers: int, dilation: int, period: int) -> list[tuple[int, int]]:
    """The (depth i, source k) pairs that a DWA weight exists for, row by row.

    Args:
        num_layers: L.
        dilation: The paper's k: depth i reads x_k when (i - k) % k == 0.
        period: The paper's p: a DWA only at the depths i % p == 0.

    Returns:
        (i, k) pairs, i = 1 .. L, k <= i, in row-major order.
    """
    return [
        (i, k)
        for i in range(1, num_layers + 1)
        if i % period == 0
        for k in range(i + 1)
        if (i - k) % dilation == 0
    ]


class DenseFormerTopology(LearnedWiring):
    """Depth-weighted averages with identity-initialised weights (see the module).

    Attributes:
        alpha: The learnable weights, one per (depth, source) pair of
            :func:`dwa_entries`, fp32.
    """

    parameterisation = "denseformer"
    FORMULA = "h_{j+1} = sum_{i<=j+1} alpha_{j+1,i} x_i  (x_0 = embeddings, x_{i+1} = y_i)"  # noqa: E501
    OPTIONS = ("dilation", "period")

    @classmethod
    def from_config(
        cls, config: TopologyConfig, num_layers: int, mix: MixBackend, hidden_size: int, eps: float
    ) -> DenseFormerTopology:
        """Reads ``topology.dilation`` and ``topology.period``."""
        return cls(num_layers, mix, config.dilation, config.period)

    def __init__(
        self, num_layers: int, mix: MixBackend, dilation: int = 1, period: int = 1
    ) -> None:
        super().__init__(num_layers, mix)
        self.dilation, self.period = dilation, period
        entries = dwa_entries(num_layers, dilation, period)
        rows = torch.tensor([i for i, _ in entries], dtype=torch.long)
        cols = torch.tensor([k for _, k in entries], dtype=torch.long)
        self.alpha = nn.Parameter((rows == cols).float())  # identity at initialisation
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        averaged = torch.zeros(num_layers + 1, dtype=torch.bool)
        averaged[rows] = True
        # Depths without a DWA read x_i itself: an identity row, frozen.
        identity = torch.diag((~averaged).float())  # (L+1, L+1)
        self.register_buffer("identity_rows", identity, persistent=False)
        self.learned_depths = [i for i in range(1, num_layers + 1) if bool(averaged[i])]

    def reads_matrix(self) -> torch.Tensor:
        """R (L+1, L+1), fp32 or wider, differentiable in alpha: row i = alpha_i."""
        with torch.autocast(device_type=self.alpha.device.type, enabled=False):
            alpha = self.alpha.to(accumulation_dtype(self.alpha.dtype))
            reads = self.identity_rows.to(alpha.dtype)  # (L+1, L+1)
            return reads.index_put((self.rows, self.cols), alpha, accumulate=True)

    def reads(self) -> torch.Tensor:
        """R as a batch of one (static)."""
        return self.reads_matrix().detach().unsqueeze(0)  # (1, L+1, L+1)

    def forward(self, blocks: Sequence[Block], h0: torch.Tensor, *block_args) -> list[torch.Tensor]:
        """Runs the blocks with a DWA after each (or each period-th) block.

        Returns:
            [h_0, ..., h_L]: the embeddings, the input of every block, and the last DWA.
        """
        if len(blocks) != self.num_layers:
            raise ValueError(f"topology wires {self.num_layers} blocks, got {len(blocks)}")
        with torch.autocast(device_type=self.alpha.device.type, enabled=False):
            matrix, own = method_matrix(self.reads_matrix())  # (L, L+1), (L,)
            scale = torch.cat([own.new_ones(1), own])  # (L+1,): c_k, s_k = h_k / c_k
            weights = matrix * scale / own.unsqueeze(1)  # (L, L+1): mix over s_k
        mixer = self.mix(weights)
        stored = [h0]  # s_k
        inputs = [h0]  # h_k = c_k s_k
        for j, block in enumerate(blocks):
            y = block(inputs[-1], *block_args)  # (..., D)
            stored.append(mixer(j, y, stored))  # s_{j+1} (..., D)
            if j + 1 in self.learned_depths:
                inputs.append(stored[-1] * own[j].to(y.dtype))  # h_{j+1} (..., D)
            else:
                inputs.append(stored[-1])  # d_j = 1: no DWA at this depth
        return inputs

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"{super().extra_repr()}, dilation={self.dilation}, period={self.period}"
