"""Hyper-Connections: n parallel residual streams with learned width and depth connections.

Zhu, Huang, Zeng, Wu, Min, Qiao, Zhou, "Hyper-Connections", ICLR 2025 (arXiv 2409.19606),
Algorithm 2 of its appendix.

The residual state of a token is a matrix ``H`` of n streams (n x D). The embeddings
start every stream (``H_0 = (h_0, ..., h_0)``). Block j reads a weighted sum of the
streams and writes its update back into every stream with its own weight::

    h_j     = A_m^T H_j                                  (width connection, n)
    H_{j+1} = A_r^T H_j + B^T (y_j - h_j)                (A_r: n x n, B: 1 x n)

and the streams are summed before the final norm. ``y_j - h_j`` is the block's update
(the paper's T(h): ancre's blocks return ``h + Attn + MLP``); ancre computes
``H_{j+1} = (A_r - A_m B)^T H_j + B^T y_j``, the same numbers without the subtraction.
At initialisation A_m = e_{j mod n}, A_r = I and B = 1, so every stream stays equal
to the plain residual stream and the sum is n times it: after the scale-free final
RMSNorm the model computes the plain residual network's function (up to the norm's eps).

Dynamic (``topology.dynamic``), with ``Hn = RMSNorm(H)`` per stream (learned gain)::

    A_m(H) = A_m + s_a tanh(Hn W_m),  A_r(H) = A_r + s_a tanh(Hn W_r),
    B(H)   = B + s_b tanh(Hn W_b)^T

with W zero-initialised and s_a = s_b = 0.01 learned scalars per block.

Where ancre departs from the paper: a connection per decoder block (attention and MLP
keep the inner residual between them), where the paper has one per sublayer; RMSNorm
rather than LayerNorm before the dynamic projections (as the hyper-connections package
does). The parameters live on this module (stacked over blocks), so they are topology
parameters: the topology lr multiplier and no weight decay.

A fused kernel would, per block and token, read H (n x D) once, form h_j and, after the
block, write H_{j+1} from H and y_j in one pass (2n + 2 reads and n writes of D);
its backward needs H and y_j and the small per-token matrices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ancre.config import TopologyConfig
from ancre.kernels import MixBackend
from ancre.kernels.reference import accumulation_dtype
from ancre.model.topology.base import Block
from ancre.model.topology.effective import LearnedWiring

DYNAMIC_SCALE_INIT = 1e-2
"""Initial s_a and s_b of the dynamic connections (the paper's and the package's)."""


class StreamMaps:
    """The connection weights of one block: pre (..., n), res (..., n, n), post (..., n).

    ``res[s, t]`` is the weight of stream s in the new stream t (the paper's A_r).
    """

    def __init__(self, pre: torch.Tensor, res: torch.Tensor, post: torch.Tensor) -> None:
        self.pre, self.res, self.post = pre, res, post


class HyperTopology(LearnedWiring):
    """Hyper-Connections, static or dynamic (see the module).

    Attributes:
        streams: n.
        static_pre: (L, n) A_m per block.
        static_res: (L, n, n) A_r per block.
        static_post: (L, n) B per block.
    """

    parameterisation = "hyper"
    FORMULA = "h_j = A_m^T H_j;  H_{j+1} = A_r^T H_j + B^T (y_j - h_j);  the head reads sum_s H_s"  # noqa: E501
    OPTIONS = ("streams", "dynamic", "fractions")

    @classmethod
    def from_config(
        cls, config: TopologyConfig, num_layers: int, mix: MixBackend, hidden_size: int, eps: float
    ) -> HyperTopology:
        """Reads ``topology.streams`` and ``topology.dynamic``; D and the epsilon.

        (``topology.fractions`` > 1 builds Frac-Connections instead, ``kinds.build_topology``.)
        """
        return cls(num_layers, mix, hidden_size, config.streams, config.dynamic, eps)

    def __init__(
        self,
        num_layers: int,
        mix: MixBackend,
        hidden_size: int,
        streams: int = 4,
        dynamic: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__(num_layers, mix)
        if streams < 1:
            raise ValueError(f"hyper-connections need at least one stream, got {streams}")
        self.streams, self.dynamic, self.eps = streams, dynamic, eps
        first = torch.zeros(num_layers, streams)  # (L, n)
        first[torch.arange(num_layers), torch.arange(num_layers) % streams] = 1.0
        self.static_pre = nn.Parameter(first)
        self.static_res = nn.Parameter(torch.eye(streams).repeat(num_layers, 1, 1))
        self.static_post = nn.Parameter(torch.ones(num_layers, streams))
        if dynamic:
            self._init_dynamic(hidden_size)

    def _init_dynamic(self, hidden_size: int) -> None:
        init_dynamic(self, self.num_layers, hidden_size, 1 + self.streams)

    def maps(self, j: int, streams: torch.Tensor | None) -> StreamMaps:
        """Block j's connection weights for the streams (..., n, D) (None when static)."""
        if streams is None or not self.dynamic:
            return StreamMaps(self.static_pre[j], self.static_res[j], self.static_post[j])
        alpha, beta = dynamic_terms(self, j, streams)  # (..., n, 1+n), (..., n)
        return StreamMaps(
            self.static_pre[j] + alpha[..., 0],  # (..., n)
            self.static_res[j] + alpha[..., 1:],  # (..., n, n)
            self.static_post[j] + beta,  # (..., n)
        )

    def forward(self, blocks: Sequence[Block], h0: torch.Tensor, *block_args) -> list[torch.Tensor]:
        """Runs the blocks over n streams.

        Returns:
            [h_0, h_1, ..., h_{L-1}, sum of the streams]: the embeddings, the input of
            every block, and what the final norm reads.
        """
        if len(blocks) != self.num_layers:
            raise ValueError(f"topology wires {self.num_layers} blocks, got {len(blocks)}")
        state = h0.unsqueeze(-2).expand(*h0.shape[:-1], self.streams, h0.shape[-1])  # (..., n, D)
        states = [h0]
        for j, block in enumerate(blocks):
            maps = self.maps(j, state)
            pre, post = maps.pre.to(state.dtype), maps.post.to(state.dtype)
            carry = (maps.res - maps.pre.unsqueeze(-1) * maps.post.unsqueeze(-2)).to(state.dtype)
            if self.dynamic:
                self._record(maps.pre, maps.res, maps.post)
            h = (pre.unsqueeze(-1) * state).sum(-2)  # (..., D)
            if j:
                states.append(h)
            y = block(h, *block_args)  # (..., D)
            state = torch.einsum("...st,...sd->...td", carry, state)  # (..., n, D)
            state = state + post.unsqueeze(-1) * y.unsqueeze(-2)  # (..., n, D)
        states.append(state.sum(-2))  # (..., D)
        return states

    def reads(self) -> torch.Tensor:
        """(N, L+1, L+1): R from the static weights, or from the recorded per-token ones."""
        return stream_reads(*stacked_maps(self))

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"{super().extra_repr()}, streams={self.streams}, dynamic={self.dynamic}"


def stacked_maps(wiring: LearnedWiring) -> tuple[torch.Tensor, ...]:
    """Every block's pre, res and post weights, stacked over the blocks, fp32 on the CPU.

    Args:
        wiring: A wiring with ``maps(j, None)`` (its static weights) and, when dynamic,
            the per-token weights of its last :meth:`LearnedWiring.recording`.

    Returns:
        pre (N, L, ...), res (N, L, ...), post (N, L, ...): N = 1 when static, else the
        recorded tokens.
    """
    if wiring.dynamic:
        records = wiring.recorded()[-wiring.num_layers :]
        stacked = [torch.stack([r[k] for r in records], 1) for k in range(3)]  # (N, L, ...)
    else:
        with torch.no_grad():
            maps = [wiring.maps(j, None) for j in range(wiring.num_layers)]
        stacked = [
            torch.stack([m.pre for m in maps]).float().unsqueeze(0),  # (1, L, ...)
            torch.stack([m.res for m in maps]).float().unsqueeze(0),
            torch.stack([m.post for m in maps]).float().unsqueeze(0),
        ]
    return tuple(t.cpu() for t in stacked)


def init_dynamic(wiring: nn.Module, layers: int, width: int, columns: int) -> None:
    """Gives a stream wiring the parameters of its dynamic part, at their start.

    ``norm_weight`` (L, width) ones, ``dynamic_alpha`` (L, width, columns) and
    ``dynamic_beta`` (L, width) zeros, ``alpha_scale`` and ``beta_scale`` (L,) 0.01: the
    names and shapes of hyper's (width D) and Frac-Connections' (width D/m).
    """
    wiring.norm_weight = nn.Parameter(torch.ones(layers, width))
    wiring.dynamic_alpha = nn.Parameter(torch.zeros(layers, width, columns))
    wiring.dynamic_beta = nn.Parameter(torch.zeros(layers, width))
    wiring.alpha_scale = nn.Parameter(torch.full((layers,), DYNAMIC_SCALE_INIT))
    wiring.beta_scale = nn.Parameter(torch.full((layers,), DYNAMIC_SCALE_INIT))


def dynamic_terms(wiring: nn.Module, j: int, parts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Block j's ``s_a tanh(Hn W_alpha)`` and ``s_b tanh(Hn W_beta)``, Hn = RMSNorm(parts).

    Args:
        wiring: A module with the parameters of :func:`init_dynamic` and an ``eps``.
        j: The block.
        parts: (..., n, width): the streams, or the fractions.

    Returns:
        (..., n, columns) and (..., n), fp32 or wider.
    """
    weight = wiring.norm_weight[j].to(parts.dtype)
    normed = F.rms_norm(parts, parts.shape[-1:], weight, wiring.eps)  # (..., n, width)
    alpha = torch.tanh(normed @ wiring.dynamic_alpha[j].to(normed.dtype))  # (..., n, columns)
    wide = accumulation_dtype(parts.dtype)
    beta = torch.tanh(normed @ wiring.dynamic_beta[j].to(normed.dtype)).to(wide)  # (..., n)
    return alpha.to(wide) * wiring.alpha_scale[j], beta * wiring.beta_scale[j]


def stream_reads(pre: torch.Tensor, res: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """The reads matrices of a stream wiring from its per-block weights.

    Args:
        pre: (N, L, n) A_m per token and block.
        res: (N, L, n, n) A_r.
        post: (N, L, n) B.

    Returns:
        (N, L+1, L+1): row j = block j's input over x_0 .. x_j; row L = the sum of the
        streams that the final norm reads.
    """
    tokens, layers, n = pre.shape
    coefficients = torch.zeros(tokens, n, layers + 1, dtype=torch.float64)  # streams over x
    coefficients[:, :, 0] = 1.0
    reads = torch.zeros(tokens, layers + 1, layers + 1, dtype=torch.float64)
    for j in range(layers):
        a, r, b = pre[:, j].double(), res[:, j].double(), post[:, j].double()
        h = torch.einsum("ns,nsx->nx", a, coefficients)  # (N, L+1)
        reads[:, j] = h
        update = -h  # y_j - h_j: x_{j+1} - h_j
        update[:, j + 1] += 1.0
        coefficients = torch.einsum("nst,nsx->ntx", r, coefficients)
        coefficients = coefficients + b.unsqueeze(-1) * update.unsqueeze(1)
    reads[:, layers] = coefficients.sum(1)
    return reads
