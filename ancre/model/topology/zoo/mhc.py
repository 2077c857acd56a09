"""mHC: Hyper-Connections whose stream mixing is a doubly stochastic matrix.

DeepSeek-AI (Xie et al.), "mHC: Manifold-Constrained Hyper-Connections", arXiv 2512.24880.

The streams of ``ancre.model.topology.zoo.hyper``, with the paper's maps. For the n x D state
``x_l`` of a token, flattened to ``vec(x_l)`` (1 x nD) and normalised,
``z = RMSNorm(vec(x_l))``::

    H_pre  = sigmoid(a_pre  * (z phi_pre)  + b_pre)          (1 x n)
    H_post = 2 sigmoid(a_post * (z phi_post) + b_post)       (1 x n)
    H_res  = SinkhornKnopp(a_res * mat(z phi_res) + b_res)   (n x n)
    h_l     = H_pre x_l
    x_{l+1} = H_res x_l + H_post^T (y_l - h_l)

``SinkhornKnopp(M)`` exponentiates M and normalises its columns, then its rows,
``topology.sinkhorn_iters`` times (20 by default): H_res is then (close to) doubly
stochastic, so the mixing neither grows nor shrinks the streams' mean. The dynamic
part (``topology.dynamic: true``, the paper's form) has phi zero-initialised and
learned gates a = 0.01; without it the maps are the static biases alone.

Where ancre's reading may depart from the paper, written down (docs/topologies.md):

- Initialisation: the paper fixes only the gates (a = 0.01, its Table 5) and says
  that with the mappings disabled H_pre is 1/n, H_post is 1 and H_res the identity.
  ancre starts every block as the plain residual network exactly, as the paper's
  aim (the identity mapping) and one public reading of it do: every stream starts as
  h_0, H_pre sums to one (so h_l is the plain residual state), H_post = 2 sigmoid(0) = 1, and
  H_res (rows sum to one after Sinkhorn's last, row, step) keeps equal streams equal;
  the final norm reads their sum, n times the plain stream, which RMSNorm does not
  see (up to its eps). Two choices are ancre's: H_pre puts 2/(n+1) on stream l mod n
  and 1/(n+1) on the others, not 1/n on all, because equal weights on equal streams
  give every stream the same gradient, and a static mHC would then stay the plain
  residual network for ever; b_res = 4 I (H_res about 0.95 I at n = 4), near the
  identity without saturating Sinkhorn's gradient. mHC needs n >= 2 (H_pre = 1 on a
  single stream would need an infinite logit).
- One connection per decoder block (the paper: per sublayer), as in ``hyper``.
- The package computes its dynamic weights per stream from that stream alone
  (``RMSNorm(x_s) W``), where the paper projects the whole flattened state; ancre
  follows the paper. The package normalises rows before columns in ancre's
  orientation; both converge to the same doubly stochastic matrix.

A fused kernel would, as the paper's does, compute the three maps from one pass
over x_l (RMSNorm and the nD x (n^2 + 2n) projection fused, Sinkhorn in registers),
then read x_l and y_l once to write x_{l+1}.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ancre.config import TopologyConfig
from ancre.kernels import MixBackend
from ancre.kernels.reference import accumulation_dtype
from ancre.model.topology.zoo.hyper import DYNAMIC_SCALE_INIT, HyperTopology, StreamMaps

RES_DIAGONAL_INIT = 4.0
"""b_res at step 0 is this times the identity (H_res about 0.95 I at n = 4)."""


def residual_biases(num_layers: int, streams: int) -> tuple[torch.Tensor, ...]:
    """b_pre (L, n), b_res (L, n, n) and b_post (L, n) that make step 0 the plain residual.

    sigmoid(b_pre) is 2/(n+1) on stream l mod n and 1/(n+1) elsewhere (it sums to one),
    2 sigmoid(b_post) = 1 and b_res = 4 I (see the module).
    """
    share = torch.full((num_layers, streams), 1.0 / (streams + 1))  # (L, n)
    share[torch.arange(num_layers), torch.arange(num_layers) % streams] = 2.0 / (streams + 1)
    pre = torch.log(share / (1.0 - share))  # the logit of each share
    res = RES_DIAGONAL_INIT * torch.eye(streams).repeat(num_layers, 1, 1)  # (L, n, n)
    return pre, res, torch.zeros(num_layers, streams)


def sinkhorn_knopp(logits: torch.Tensor, iters: int) -> torch.Tensor:
    """exp(logits) (..., n, n) made doubly stochastic by alternate normalisation (fp32 or wider).

    Each iteration normalises the columns to sum to one, then the rows.
    """
    logits = logits.to(accumulation_dtype(logits.dtype))
    matrix = (logits - logits.amax((-2, -1), keepdim=True).detach()).exp()
    for _ in range(iters):
        matrix = matrix / matrix.sum(-2, keepdim=True)  # columns
        matrix = matrix / matrix.sum(-1, keepdim=True)  # rows
    return matrix


class ManifoldHyperTopology(HyperTopology):
    """mHC (see the module). ``static_*`` hold the biases b_pre, b_res, b_post.

    Attributes:
        sinkhorn_iters: Sinkhorn-Knopp iterations.
    """

    parameterisation = "mhc"
    FORMULA = "h_j = sigma(pre)^T H_j;  H_{j+1} = Sinkhorn(res) H_j + 2 sigma(post)^T (y_j - h_j)"  # noqa: E501
    OPTIONS = ("streams", "dynamic", "sinkhorn_iters")

    @classmethod
    def from_config(
        cls, config: TopologyConfig, num_layers: int, mix: MixBackend, hidden_size: int, eps: float
    ) -> ManifoldHyperTopology:
        """Reads ``topology.streams``, ``dynamic`` and ``sinkhorn_iters``; D and the epsilon."""
        return cls(
            num_layers, mix, hidden_size, config.streams, config.dynamic, eps,
            config.sinkhorn_iters,
        )  # fmt: skip

    def __init__(
        self,
        num_layers: int,
        mix: MixBackend,
        hidden_size: int,
        streams: int = 4,
        dynamic: bool = False,
        eps: float = 1e-5,
        sinkhorn_iters: int = 20,
    ) -> None:
        if sinkhorn_iters < 1:
            raise ValueError(f"sinkhorn_iters must be at least 1, got {sinkhorn_iters}")
        if streams < 2:
            raise ValueError(f"mHC needs at least 2 streams (topology.streams), got {streams}")
        super().__init__(num_layers, mix, hidden_size, streams, dynamic, eps)
        self.sinkhorn_iters = sinkhorn_iters
        pre, res, post = residual_biases(num_layers, streams)
        with torch.no_grad():
            self.static_pre.copy_(pre)
            self.static_res.copy_(res)
            self.static_post.copy_(post)

    def _init_dynamic(self, hidden_size: int) -> None:
        n, layers = self.streams, self.num_layers
        self.norm_weight = nn.Parameter(torch.ones(layers, n * hidden_size))  # (L, nD)
        self.projection = nn.Parameter(torch.zeros(layers, n * hidden_size, n * n + 2 * n))
        self.gates = nn.Parameter(torch.full((layers, 3), DYNAMIC_SCALE_INIT))  # pre, post, res

    def maps(self, j: int, streams: torch.Tensor | None) -> StreamMaps:
        """Block j's maps; ``res[s, t]`` = H_res[t, s] (the weight of stream s in stream t)."""
        n = self.streams
        pre, post, res = self.static_pre[j], self.static_post[j], self.static_res[j]
        if streams is not None and self.dynamic:
            flat = streams.flatten(-2)  # (..., nD)
            z = F.rms_norm(flat, flat.shape[-1:], self.norm_weight[j].to(flat.dtype), self.eps)
            projected = z @ self.projection[j].to(z.dtype)  # (..., n^2 + 2n)
            projected = projected.to(accumulation_dtype(projected.dtype))
            gates = self.gates[j]
            pre = pre + gates[0] * projected[..., :n]  # (..., n)
            post = post + gates[1] * projected[..., n : 2 * n]  # (..., n)
            res = res + gates[2] * projected[..., 2 * n :].unflatten(-1, (n, n))  # (..., n, n)
        h_res = sinkhorn_knopp(res, self.sinkhorn_iters)  # (..., n, n)
        return StreamMaps(torch.sigmoid(pre), h_res.transpose(-1, -2), 2 * torch.sigmoid(post))

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"{super().extra_repr()}, sinkhorn_iters={self.sinkhorn_iters}"
