"""Frac-Connections: hyper-connections over fractions of one stream (expansion rate 1/m).

Zhu, Huang, Zeng, Wu, Min, Qiao, Zhou, "Frac-Connections: Fractional Extension of
Hyper-Connections" (arXiv 2503.14125). ``topology.kind: hyper`` with
``topology.fractions: m`` (and ``topology.streams: 1``).

The residual state of a token is the D-wide state cut into m contiguous fractions,
``H = (h^1, ..., h^m)`` (m x D/m): the stream costs what the plain one does. Block j reads
the fractions mixed by a width matrix and concatenated back to D, and writes its update
back fraction by fraction, with a depth weight per fraction::

    u_j       = Cat_i( sum_k G[k, i] H_j^k )                       (G: m x m)
    H_{j+1}^k = B_k (y_j - u_j)^k + sum_i A[i, k] H_j^i            (A: m x m, B: m)

and the head reads the fractions concatenated. ``y_j - u_j`` is the block's update (ancre's
blocks return ``h + Attn + MLP``); ancre computes ``H_{j+1}^k = B_k y_j^k + sum_i (A[i, k] -
B_k G[i, k]) H_j^i``, the same numbers without the subtraction. At initialisation
G = A = I and B = 1: u_j = h_j and H_{j+1} = y_j, the plain residual network exactly.

Dynamic (``topology.dynamic``), with ``Hn = RMSNorm(H)`` per fraction (over D/m, learned
gain), as dynamic hyper-connections are::

    G(H) = G + s_a tanh(Hn W_G),  A(H) = A + s_a tanh(Hn W_A),  B(H) = B + s_b tanh(Hn W_B)

with W zero-initialised and s_a = s_b = 0.01 learned scalars per block: W_G and W_A
(D/m x m each) give fraction k's row of G and of A, W_B (D/m) its own B_k.

Where ancre departs from the paper: a connection per decoder block, RMSNorm rather than
LayerNorm (as ``hyper``). The hyper-connections package's ``num_fracs`` is not this:
at initialisation its branch reads copies of the first fraction and every fraction
gets the sum of the update's fractions (read in its version 0.4.11), so it does not
start as the plain network; ancre follows the paper and is not compared with it.

A fused kernel would, per block and token, read the fractions once to write u_j and,
after the block, write H_{j+1} from H_j and y_j in one pass (3 reads and 2 writes of
D); its backward needs H_j, y_j and the per-token m x m maps.

Snapshots: the reads matrix is the fraction-diagonal part of the wiring, averaged over
the fractions (R[j, i] = mean_f of the weight of x_i's fraction f in fraction f of
block j's input); the weights across fractions are in ``raw``. Exact while G and A
stay diagonal and B is equal over the fractions, as at initialisation. The depth
statistics (``ancre.model.depth_stats``) read the wiring per pair of fractions, so the
final state's shares are exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ancre.config import ConfigError, TopologyConfig
from ancre.kernels import MixBackend
from ancre.model.topology.base import Block
from ancre.model.topology.effective import LearnedWiring
from ancre.model.topology.zoo.hyper import StreamMaps, dynamic_terms, init_dynamic, stacked_maps


class FracTopology(LearnedWiring):
    """Frac-Connections, static or dynamic (see the module).

    Attributes:
        fractions: m.
        static_pre: (L, m, m) G per block: [k, i] is fraction k's weight in input fraction i.
        static_res: (L, m, m) A per block: [i, k] is fraction i's weight in new fraction k.
        static_post: (L, m) B per block.
    """

    parameterisation = "frac"
    FORMULA = (
        "H_j = h_j cut into m fractions;  u_j = Cat_i(sum_k G[k, i] H_j^k);  "
        "H_{j+1}^k = B_k (y_j - u_j)^k + sum_i A[i, k] H_j^i;  the head reads Cat_k H^k"
    )

    @classmethod
    def from_config(
        cls, config: TopologyConfig, num_layers: int, mix: MixBackend, hidden_size: int, eps: float
    ) -> FracTopology:
        """Reads ``topology.fractions`` and ``topology.dynamic``; D and the epsilon."""
        return cls(num_layers, mix, hidden_size, config.fractions, config.dynamic, eps)

    def __init__(
        self,
        num_layers: int,
        mix: MixBackend,
        hidden_size: int,
        fractions: int,
        dynamic: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__(num_layers, mix)
        if fractions < 2 or hidden_size % fractions:
            raise ConfigError(
                "topology.fractions",
                f"is {fractions}; Frac-Connections cut the {hidden_size}-wide state into "
                "2 or more fractions of equal width: it must divide model.hidden_size",
            )
        self.fractions, self.dynamic, self.eps = fractions, dynamic, eps
        eye = torch.eye(fractions).repeat(num_layers, 1, 1)  # (L, m, m)
        self.static_pre = nn.Parameter(eye.clone())
        self.static_res = nn.Parameter(eye.clone())
        self.static_post = nn.Parameter(torch.ones(num_layers, fractions))
        if dynamic:  # per fraction: W_G, W_A (D/m x m each), W_B (D/m)
            init_dynamic(self, num_layers, hidden_size // fractions, 2 * fractions)

    def maps(self, j: int, state: torch.Tensor | None) -> StreamMaps:
        """Block j's G (..., m, m), A (..., m, m) and B (..., m) for fractions (..., m, D/m)."""
        if state is None or not self.dynamic:
            return StreamMaps(self.static_pre[j], self.static_res[j], self.static_post[j])
        m = self.fractions
        alpha, beta = dynamic_terms(self, j, state)  # (..., m, 2m), (..., m)
        return StreamMaps(
            self.static_pre[j] + alpha[..., :m],  # (..., m, m)
            self.static_res[j] + alpha[..., m:],  # (..., m, m)
            self.static_post[j] + beta,  # (..., m)
        )

    def forward(self, blocks: Sequence[Block], h0: torch.Tensor, *block_args) -> list[torch.Tensor]:
        """Runs the blocks over the fractions of one stream.

        Returns:
            [h_0, u_1, ..., u_{L-1}, final]: the embeddings, the input of every later
            block, and what the final norm reads.
        """
        if len(blocks) != self.num_layers:
            raise ValueError(f"topology wires {self.num_layers} blocks, got {len(blocks)}")
        state = h0.unflatten(-1, (self.fractions, -1))  # (..., m, D/m)
        states = [h0]
        for j, block in enumerate(blocks):
            maps = self.maps(j, state)
            pre, post = maps.pre.to(state.dtype), maps.post.to(state.dtype)
            carry = (maps.res - maps.pre * maps.post.unsqueeze(-2)).to(state.dtype)  # (..., m, m)
            if self.dynamic:
                self._record(maps.pre, maps.res, maps.post)
            u = torch.einsum("...ki,...kd->...id", pre, state).flatten(-2)  # (..., D)
            if j:
                states.append(u)
            y = block(u, *block_args).unflatten(-1, (self.fractions, -1))  # (..., m, D/m)
            state = torch.einsum("...ik,...id->...kd", carry, state)  # (..., m, D/m)
            state = state + post.unsqueeze(-1) * y
        states.append(state.flatten(-2))  # (..., D)
        return states

    def fraction_reads(self) -> torch.Tensor:
        """(N, L+1, L+1, m, m): the reads per pair of fractions, static or per recorded token."""
        return fraction_reads(*stacked_maps(self))  # G, A (N, L, m, m), B (N, L, m)

    def reads(self) -> torch.Tensor:
        """(N, L+1, L+1): the fraction-diagonal reads, averaged over the fractions."""
        return self.fraction_reads().diagonal(dim1=-2, dim2=-1).mean(-1)

    def share_reads(self) -> torch.Tensor:
        """The reads per pair of fractions: the final state's shares are exact with them."""
        return self.fraction_reads()

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"{super().extra_repr()}, fractions={self.fractions}, dynamic={self.dynamic}"


def fraction_reads(pre: torch.Tensor, res: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """The reads of Frac-Connections per pair of fractions, from their per-block weights.

    Args:
        pre: (N, L, m, m) G per token and block.
        res: (N, L, m, m) A.
        post: (N, L, m) B.

    Returns:
        (N, L+1, L+1, m, m): [n, j, i, f, g] is the weight of fraction g of x_i in fraction
        f of block j's input (row L: of what the final norm reads).
    """
    tokens, layers, m, _ = pre.shape
    eye = torch.eye(m, dtype=torch.float64)
    # coefficients[n, k, i, g]: the weight of fraction g of x_i in fraction k of the state
    coefficients = torch.zeros(tokens, m, layers + 1, m, dtype=torch.float64)
    coefficients[:, :, 0] = eye
    reads = torch.zeros(tokens, layers + 1, layers + 1, m, m, dtype=torch.float64)
    for j in range(layers):
        g, a, b = pre[:, j].double(), res[:, j].double(), post[:, j].double()
        u = torch.einsum("nkf,nkig->nfig", g, coefficients)  # block j's input fractions
        reads[:, j] = u.permute(0, 2, 1, 3)  # (N, L+1, m, m)
        update = -u  # y_j - u_j, with y_j = x_{j+1}
        update[:, :, j + 1] += eye
        coefficients = torch.einsum("nik,nixg->nkxg", a, coefficients)
        coefficients = coefficients + b[:, :, None, None] * update
    reads[:, layers] = coefficients.permute(0, 2, 1, 3)
    return reads
