"""mHC: Hyper-Connections whose stream mixing is a doubly stochastic matrix.

DeepSeek-AI (Xie et al.), "mHC: Manifold-Constrained Hyper-Connections", arXiv 2512.24880.

The streams of ``ancre.model.hyper``, with the paper's maps. For the n x D state
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

- Initialisation of the biases: the paper does not fix it in the text ancre follows;
  ancre takes the hyper-connections package's: b_pre = e_{l mod n}, b_res = I,
  b_post = 1 (so H_pre = (0.73 on one stream, 0.5 elsewhere), H_post = 1.46 and H_res =
  SinkhornKnopp(I)). Unlike Hyper-Connections, mHC at step 0 is not the plain residual
  network.
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

from ancre.kernels import MixBackend
from ancre.kernels.reference import accumulation_dtype
from ancre.model.hyper import DYNAMIC_SCALE_INIT, HyperTopology, StreamMaps


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
        super().__init__(num_layers, mix, hidden_size, streams, dynamic, eps)
        self.sinkhorn_iters = sinkhorn_iters

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
