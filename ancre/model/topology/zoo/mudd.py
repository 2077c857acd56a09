"""Multiway dynamic dense connections: per-token mixes of every earlier state, four per block.

Xiao, Meng, Li, Yuan, "MUDDFormer: Breaking Residual Bottlenecks in Transformers via
Multiway Dynamic Dense Connections", ICML 2025 (arXiv 2502.12170), section 2 and the
pseudo-code of its appendix B; the released code (Caiyun-AI/MUDDFormer) for what the
paper leaves open.

With x_0 the embeddings and x_{j+1} = y_j the output of block j (ancre's blocks return
``h + Attn + MLP``), after block j a small MLP reads x_{j+1} at each position and writes
the weights of four mixes of the sources x_0 .. x_{j+1}, one per input of block j+1::

    A_j(x) = GELU(RMSNorm(x_{j+1}) W1_j) W2_j + a_j            (C x S per token)
    X^c_{j+1} = sum_i A_j[c, i] x_i,   c in (query, key, value, residual)

Block j+1 computes ``r + Attn(N_q X^q, N_k X^k, N_v X^v)`` with r = X^r, then its MLP
on top (``ancre.model.block``: separate norms for the query, key and value inputs, as
the released model's ``sepln``). The first block reads x_0 as all four. After the last
block one mix (C = 1) is what the final norm reads. RMSNorm here has no gain (the
code's ``RMSnormNoscale``), W1_j is D x (C S) (the last block's four times wider, the
code's ``expand_last``), W2_j is (C S) x (C S), and S = j + 2 sources.

Initialisation (the paper's section 3): W1 ~ N(0, 1/D), W2 = 0, a_j one-hot on the
newest source x_{j+1} for every stream: each input of block j+1 is y_j, the plain
residual network, and the model's logits equal the plain model's at step 0.

``topology.window: k`` is the paper's MUDDFormer-SWk: each mix reads the embeddings and
the outputs of the last k blocks only (S = 1 + min(k, j+1)).

Where ancre departs: no rounding of the MLP's width to a multiple of 64 (an accelerator
layout choice); the parameters live on this module (stacked per block), so they are
topology parameters (the topology lr multiplier, no weight decay) and their draw comes
after the blocks' (``Transformer.init_weights``), so a run's blocks start as the plain
run's of the same seed; the FFN width re-allocation of the paper's section 2.4 is not
part of the kind (it is a change of the blocks, not of the wiring). Mixes are summed in
fp32 (or wider) and stored in the stream's dtype.

A fused kernel would, per token after block j, read x_{j+1} for the weight MLP and each
source once and write the four mixes in one pass (S + 1 reads and 4 writes of D); its
backward needs the sources and the per-token weights, which this module keeps.

Snapshots: the effective matrix is the residual stream's (its reads matrix: row j+1 is
A_j[residual] over x_0 .. x_{j+1}), averaged over the probe tokens with its spread; the
query, key and value mixes' means are under ``raw`` with the static weights a_j.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ancre.config import TopologyConfig
from ancre.kernels import MixBackend
from ancre.kernels.reference import accumulation_dtype
from ancre.model.multiway import Multiway
from ancre.model.topology.base import Block
from ancre.model.topology.effective import LearnedWiring

STREAMS = ("query", "key", "value", "residual")
"""The inputs of a block that each get a mix of their own (the paper's Q, K, V, R)."""
LAST_EXPANSION = 4
"""How much wider the last block's weight MLP is (the released code's ``expand_last``)."""


class DenseWeights(nn.Module):
    """The weight MLP and static weights of the mixes after one block.

    Its own module, so that a partitioned build (ZeRO-3's ``deepspeed.zero.Init``, which
    gathers a module's own parameters around ``Module.apply``) draws W1 whole.

    Attributes:
        up: W1, (D, W): W = C S, four times that after the last block.
        down: W2, (W, C S), zero at step 0.
        static: a, (C, S), one-hot on the newest source at step 0.
    """

    def __init__(self, hidden_size: int, streams: int, sources: int, expansion: int) -> None:
        super().__init__()
        width = streams * sources * expansion
        self.up = nn.Parameter(torch.zeros(hidden_size, width))  # drawn by draw_parameters
        self.down = nn.Parameter(torch.zeros(width, streams * sources))
        first = torch.zeros(streams, sources)  # (C, S)
        first[:, -1] = 1.0  # the newest source, x_{j+1}: the plain residual network
        self.static = nn.Parameter(first)

    def draw_parameters(self) -> None:
        """Draws W1 from N(0, 1/D) (the paper's), from the current RNG state."""
        with torch.no_grad():
            self.up.normal_(0.0, 1.0 / math.sqrt(self.up.shape[0]))


class MultiwayDenseTopology(LearnedWiring):
    """MUDD connections, dense or over a window of the last blocks (see the module).

    Attributes:
        window: k of MUDDFormer-SWk: sources are x_0 and the last k outputs (0: all).
        eps: Epsilon of the gain-free RMSNorm before each weight MLP.
        dense: The :class:`DenseWeights` (W1_j, W2_j, a_j) of the mixes after block j.
    """

    parameterisation = "mudd"
    FORMULA = (
        "X^c_{j+1} = sum_i A_j[c, i] x_i,  A_j = GELU(RMSNorm(x_{j+1}) W1_j) W2_j + a_j,  "
        "c in (q, k, v, r);  x_0 = h_0, x_{i+1} = y_i;  block j+1 reads X^q, X^k, X^v, X^r"
    )
    OPTIONS = ("window",)
    MULTIWAY = True
    dynamic = True

    @classmethod
    def from_config(
        cls, config: TopologyConfig, num_layers: int, mix: MixBackend, hidden_size: int, eps: float
    ) -> MultiwayDenseTopology:
        """Reads ``topology.window``; D and the epsilon."""
        return cls(num_layers, mix, hidden_size, config.window, eps)

    def __init__(
        self,
        num_layers: int,
        mix: MixBackend,
        hidden_size: int,
        window: int = 0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__(num_layers, mix)
        if window < 0:
            raise ValueError(f"topology.window must be 0 (every block) or more, got {window}")
        self.window, self.eps = window, eps
        self.dense = nn.ModuleList(
            DenseWeights(
                hidden_size, self.streams_after(j), len(self.sources(j)),
                LAST_EXPANSION if j == num_layers - 1 else 1,
            )
            for j in range(num_layers)
        )  # fmt: skip

    def streams_after(self, j: int) -> int:
        """C after block j: the four inputs of block j+1, or one after the last block."""
        return 1 if j == self.num_layers - 1 else len(STREAMS)

    def sources(self, j: int) -> list[int]:
        """The indices i of the sources x_i the mixes after block j read."""
        newest = j + 1
        if not self.window:
            return list(range(newest + 1))
        return [0, *range(max(1, newest - self.window + 1), newest + 1)]

    def weights_after(self, j: int, y: torch.Tensor) -> torch.Tensor:
        """A_j, the (..., C, S) weights of the mixes after block j, fp32 or wider."""
        wide = accumulation_dtype(y.dtype)
        norm = torch.linalg.vector_norm(y, dim=-1, keepdim=True, dtype=wide)  # (..., 1)
        inverse = torch.rsqrt(norm.square() / y.shape[-1] + self.eps)  # no wide copy of y kept
        normed = y * inverse.to(y.dtype)  # (..., D)
        dense = self.dense[j]
        hidden = F.gelu(normed @ dense.up.to(y.dtype))  # (..., W)
        dynamic = (hidden @ dense.down.to(y.dtype)).to(wide)  # (..., C S)
        static = dense.static  # (C, S)
        return dynamic.unflatten(-1, static.shape) + static.to(wide)  # (..., C, S)

    def forward(self, blocks: Sequence[Block], h0: torch.Tensor, *block_args) -> list[torch.Tensor]:
        """Runs the blocks, each reading four per-token mixes of the states before it.

        Returns:
            [h_0, r_1, ..., r_{L-1}, final]: the embeddings, the residual input of every
            later block, and what the final norm reads.
        """
        if len(blocks) != self.num_layers:
            raise ValueError(f"topology wires {self.num_layers} blocks, got {len(blocks)}")
        outputs, states = [h0], [h0]  # x_0 .. x_{j+1}; the residual inputs
        inputs: torch.Tensor | Multiway = h0
        for j, block in enumerate(blocks):
            outputs.append(block(inputs, *block_args))  # x_{j+1} = y_j (..., D)
            weights = self.weights_after(j, outputs[-1])  # (..., C, S)
            self._record(weights)
            sources = [outputs[i] for i in self.sources(j)]
            mixes = [_mix(weights[..., c, :], sources) for c in range(weights.shape[-2])]
            if j == self.num_layers - 1:
                states.append(mixes[0])  # (..., D)
            else:
                inputs = Multiway(*mixes)
                states.append(inputs.residual)
        return states

    def _reads_of(self, stream: int) -> torch.Tensor:
        """(N, L+1, L+1): the reads matrix of one stream's mixes (the last row: the final one)."""
        records = [w[0].double().cpu() for w in self.recorded()[-self.num_layers :]]
        tokens, size = records[0].shape[0], self.num_layers + 1
        reads = torch.zeros(tokens, size, size, dtype=torch.float64)
        reads[:, 0, 0] = 1.0
        for j, weights in enumerate(records):  # (N, C, S)
            row = weights[:, min(stream, weights.shape[1] - 1)]  # (N, S)
            reads[:, j + 1, self.sources(j)] = row
        return reads

    def reads(self) -> torch.Tensor:
        """(N, L+1, L+1) reads matrices of the residual stream, per recorded token."""
        return self._reads_of(STREAMS.index("residual"))

    def raw_parameters(self) -> dict[str, list]:
        """The static weights a_j, and the mean reads of the query, key and value mixes.

        The weight MLPs (D x C S per block) are left out: they are the bulk of the kind's
        parameters and say little read as numbers.
        """
        raw: dict[str, list] = {
            f"dense.{j}.static": d.static.detach().float().cpu().tolist()
            for j, d in enumerate(self.dense)
        }
        if self._recorded:
            for stream in STREAMS[:3]:
                mean = self._reads_of(STREAMS.index(stream)).mean(0)  # (L+1, L+1)
                raw[f"{stream}_reads"] = mean[: self.num_layers].float().tolist()
        return raw

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"{super().extra_repr()}, window={self.window or 'all'}"


class _Mix(torch.autograd.Function):
    """sum_i w[..., i] x_i, summed in fp32 (or wider), keeping only references for the backward.

    Written by hand because autograd keeps a wide copy of a narrower state for every
    product of a wide weight and that state: S copies per mix, O(L^2) states in all.
    This keeps the weights and the states themselves, which the stream holds anyway.
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, *sources: torch.Tensor) -> torch.Tensor:
        """Mixes S sources (..., D) by weights (..., S), wide, into the sources' dtype."""
        ctx.save_for_backward(weights, *sources)
        mixed = weights[..., 0:1] * sources[0]  # (..., D), wide
        for i in range(1, len(sources)):
            mixed = mixed + weights[..., i : i + 1] * sources[i]
        return mixed.to(sources[0].dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """d/dw_i = <grad, x_i> per token; d/dx_i = w_i grad."""
        weights, *sources = ctx.saved_tensors
        wide = grad.to(weights.dtype)  # (..., D)
        grad_weights = torch.stack([(wide * x).sum(-1) for x in sources], -1)  # (..., S)
        grad_sources = [(weights[..., i : i + 1] * wide).to(x.dtype) for i, x in enumerate(sources)]
        return grad_weights, *grad_sources


def _mix(weights: torch.Tensor, sources: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_i weights[..., i] sources[i], accumulated in fp32 or wider, in the sources' dtype.

    Args:
        weights: (..., S) per-token weights, fp32 or wider.
        sources: S states (..., D).
    """
    return _Mix.apply(weights, *sources)
