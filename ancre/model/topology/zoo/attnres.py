"""Attention Residuals: each block's input is a softmax over depth of the earlier outputs.

Kimi Team (Moonshot AI), "Attention Residuals", arXiv 2603.15031 (2026).

With ``v_0 = h_0`` (the embeddings) and ``v_{i+1} = y_i - h_i`` the update of block i
(ancre's blocks return ``h + Attn + MLP``; the update is the paper's layer output), the
input of block j+1 (and, after the last block, what the final norm reads) is::

    h_{j+1} = sum_{i<=j+1} a_{j,i} v_i,
    a_{j,:} = softmax_i(q_j . RMSNorm(v_i)),

with one learned pseudo-query ``q_j`` (D numbers) per reading, zero at initialisation so
that every block starts from the plain average of the outputs before it. RMSNorm here
has no gain (the query carries the scale): ``RMSNorm(v) = v / sqrt(mean(v^2) + eps)``.
The weights depend on the input, so a snapshot averages them over a probe batch.

Block AttnRes (``topology.attnres_blocks`` = N > 0): the L blocks form N groups of
L/N consecutive blocks; the updates of a finished group are summed into one source,
and a block attends over ``v_0``, the sums of the finished groups and the partial sum
of its own group so far. N = L is Full AttnRes (the default, ``attnres_blocks: 0``).

Where ancre's reading may depart from the paper (docs/topologies.md): one reading per
decoder block (attention and MLP keep the inner residual between them) where the paper
attends before every sublayer; the embeddings are a source of their own in the block
variant; RMSNorm of the keys without a gain.

Gated (``topology.form: gated``), for a start as the plain residual network (a stock
Llama imported with ``model.init_from: hf:``)::

    h_{j+1} = y_j + g_j (sum_i a_{j,i} v_i - y_j),   g_j learned, 0 at step 0

Delta (``topology.form: delta``; Luo, Cai and Hu, "Delta Attention Residuals", arXiv
2605.18855): the same sources and softmax, routed additively. The stream stays the plain
sum of the updates, ``s_0 = h_0`` and ``s_{j+1} = s_j + v_{j+1}``, and block j+1 reads the
stream plus the routed sum::

    h_{j+1} = s_{j+1} + sum_i a_{j,i} v_i,   v_{j+1} = y_j - h_j

(what the paper's released code does per sublayer; here once per block, and the final
norm reads such a sum too, as in the other forms). At zero queries every block reads the
stream plus the plain average of the sources: not the plain network.

A fused kernel would, per reading, take the S sources once: their dot products with
q_j and their RMS in one pass (S reads of D per token), the softmax in registers, and
the weighted sum in a second pass; its backward needs the sources and the S weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ancre.config import ConfigError, TopologyConfig
from ancre.kernels import MixBackend
from ancre.kernels.reference import accumulation_dtype
from ancre.model.topology.base import Block
from ancre.model.topology.effective import LearnedWiring


def group_size(num_layers: int, groups: int) -> int:
    """Blocks per group for ``topology.attnres_blocks`` (0: one group per block).

    Raises:
        ConfigError: The groups do not divide the blocks evenly.
    """
    groups = groups or num_layers
    if groups > num_layers or num_layers % groups:
        raise ConfigError(
            "topology.attnres_blocks",
            f"is {groups}; it must divide the {num_layers} blocks into equal groups (or be 0)",
        )
    return num_layers // groups


class AttentionResidualTopology(LearnedWiring):
    """Full or Block Attention Residuals (see the module).

    Attributes:
        queries: (L, D) fp32: row j scores the sources for the input of block j+1 (the
            last row: for the final norm).
        group: Blocks per group (1: Full AttnRes).
    """

    parameterisation = "attnres"
    FORMULA = "h_{j+1} = sum_i softmax_i(q_j . RMSNorm(v_i)) v_i;  v_0 = h_0, v_{i+1} = y_i - h_i"  # noqa: E501
    OPTIONS = ("attnres_blocks", "form")
    dynamic = True
    GATED_FORMULA = "h_{j+1} = y_j + g_j (sum_i softmax_i(q_j . RMSNorm(v_i)) v_i - y_j)"
    DELTA_FORMULA = (
        "h_{j+1} = s_{j+1} + sum_i softmax_i(q_j . RMSNorm(v_i)) v_i;  s_0 = h_0, "
        "s_{j+1} = s_j + v_{j+1}, v_{j+1} = y_j - h_j"
    )

    @classmethod
    def from_config(
        cls, config: TopologyConfig, num_layers: int, mix: MixBackend, hidden_size: int, eps: float
    ) -> AttentionResidualTopology:
        """Reads ``topology.attnres_blocks`` and ``topology.form``; D and the epsilon."""
        return cls(num_layers, mix, hidden_size, config.attnres_blocks, eps, config.form)

    def __init__(
        self,
        num_layers: int,
        mix: MixBackend,
        hidden_size: int,
        groups: int = 0,
        eps: float = 1e-5,
        form: str = "additive",
    ) -> None:
        super().__init__(num_layers, mix)
        self.group = group_size(num_layers, groups)
        self.eps = eps
        self.queries = nn.Parameter(torch.zeros(num_layers, hidden_size))
        if form in ("gated", "delta"):
            self.form = form
        if form == "gated":  # g_j = 0: the plain residual network at step 0
            self.gates = nn.Parameter(torch.zeros(num_layers, dtype=torch.float32))
        self.removed: torch.Tensor | None = None
        """(L, L+1) bool: sources each reading leaves out (``ancre ablate``); None: none."""
        self.renormalise_removed = True
        """Leave a removed source out of the softmax (True) or zero its weight after it."""

    def sources_read(self, j: int) -> int:
        """How many sources reading j (the input of block j+1) attends over."""
        finished = (j + 1) // self.group
        return 1 + finished + (1 if (j + 1) % self.group else 0)

    def formula(self) -> str:
        """The paper's formula, or the gated or delta one."""
        if self.form == "delta":
            return self.DELTA_FORMULA
        return self.GATED_FORMULA if self.gates is not None else self.FORMULA

    def _inverse_rms(self, source: torch.Tensor) -> torch.Tensor:
        """1 / sqrt(mean(v^2) + eps) per token, (...,) fp32 or wider."""
        wide = accumulation_dtype(source.dtype)
        norm = torch.linalg.vector_norm(source, dim=-1, dtype=wide)  # (...,)
        return torch.rsqrt(norm.square() / source.shape[-1] + self.eps)

    def forward(self, blocks: Sequence[Block], h0: torch.Tensor, *block_args) -> list[torch.Tensor]:
        """Runs the blocks, each reading a softmax over depth of the sources before it.

        Returns:
            [h_0, ..., h_L]: the embeddings, the input of every block, and what the
            final norm reads.
        """
        if len(blocks) != self.num_layers:
            raise ValueError(f"topology wires {self.num_layers} blocks, got {len(blocks)}")
        sources, scales = [h0], [self._inverse_rms(h0)]  # finished sources, (..., D), (...,)
        partial: torch.Tensor | None = None  # the updates of the group under way
        states, stream = [h0], h0  # stream: s_j, kept by the delta form only
        for j, block in enumerate(blocks):
            h = states[-1]
            update = block(h, *block_args) - h  # v_{j+1} (..., D)
            if self.form == "delta":
                stream = stream + update  # s_{j+1} (..., D)
            partial = update if partial is None else partial + update  # (..., D)
            if (j + 1) % self.group == 0:
                sources.append(partial)
                scales.append(self._inverse_rms(partial))
                partial = None
            candidates, inverse = list(sources), list(scales)
            if partial is not None:
                candidates.append(partial)
                inverse.append(self._inverse_rms(partial))
            query = self.queries[j].to(h.dtype)  # (D,)
            scores = torch.stack(
                [(c @ query).to(s.dtype) * s for c, s in zip(candidates, inverse, strict=True)], -1
            )  # (..., S)
            removed = None if self.removed is None else self.removed[j, : len(candidates)]
            if removed is not None and self.renormalise_removed:
                scores = scores.masked_fill(removed.to(scores.device), float("-inf"))
            weights = torch.softmax(scores, dim=-1)  # (..., S) fp32 or wider
            if removed is not None and not self.renormalise_removed:
                weights = weights.masked_fill(removed.to(weights.device), 0.0)
            self._record(weights)
            mixed = weights[..., 0:1].to(h.dtype) * candidates[0]  # (..., D)
            for i in range(1, len(candidates)):
                mixed = mixed + weights[..., i : i + 1].to(h.dtype) * candidates[i]  # (..., D)
            if self.gates is not None:  # y_j + g_j (mix - y_j)
                y = h + update  # (..., D)
                mixed = y + self.gates[j].to(h.dtype) * (mixed - y)
            elif self.form == "delta":  # s_{j+1} + mix
                mixed = stream + mixed
            states.append(mixed)
        return states

    def reads(self) -> torch.Tensor:
        """(N, L+1, L+1) reads matrices per token, from the recorded softmax weights."""
        weights = [w[0].double().cpu() for w in self.recorded()[-self.num_layers :]]
        tokens, size = weights[0].shape[0], self.num_layers + 1
        reads = torch.zeros(tokens, size, size, dtype=torch.float64)
        reads[:, 0, 0] = 1.0
        sources = [reads[:, 0].clone()]  # rows over x of the finished sources
        stream = reads[:, 0].clone()  # s_j of the delta form
        partial = None
        for j, a in enumerate(weights):
            update = -reads[:, j]  # v_{j+1} = x_{j+1} - h_j
            update[:, j + 1] += 1.0
            stream = stream + update
            partial = update if partial is None else partial + update
            if (j + 1) % self.group == 0:
                sources.append(partial)
                partial = None
            candidates = sources + ([partial] if partial is not None else [])
            reads[:, j + 1] = torch.einsum("ns,snx->nx", a, torch.stack(candidates))
            if self.gates is not None:  # (1 - g_j) y_j + g_j mix, y_j = x_{j+1}
                gate = float(self.gates[j].detach())
                reads[:, j + 1] *= gate
                reads[:, j + 1, j + 1] += 1.0 - gate
            elif self.form == "delta":
                reads[:, j + 1] += stream
        return reads

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"{super().extra_repr()}, groups={self.num_layers // self.group}"
