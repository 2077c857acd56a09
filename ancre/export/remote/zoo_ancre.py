"""The zoo wirings of an exported ancre model: Hyper-Connections, mHC, Attention Residuals.

The residual state of a token is n streams (n x D), each starting as the embeddings.
Block j reads ``h_j = pre^T H_j`` and writes ``H_{j+1} = res^T H_j + post^T (y_j -
h_j)``; the final norm reads the sum of the streams. ``hyper`` (Zhu et al., ICLR 2025):
pre, res, post are the static weights, plus ``s tanh(RMSNorm(H) W)`` per stream when
dynamic. ``mhc`` (DeepSeek-AI, arXiv 2512.24880): ``pre = sigmoid(.)``, ``post = 2
sigmoid(.)`` and ``res`` the transposed Sinkhorn-Knopp normalisation of ``exp(.)``,
of the static biases plus, when dynamic, gated projections of the RMS-normalised
flattened state. The same numbers as ancre's ``topology.kind: hyper`` and ``mhc``
(fp32 maps).

``attnres`` (Kimi Team, arXiv 2603.15031): with ``v_0`` the embeddings and ``v_{i+1} =
y_i - h_i`` each block's update, block j+1 (and the final norm) reads ``sum_i a_{j,i}
v_i`` with ``a_j = softmax_i(q_j . RMSNorm(v_i))``; in the block variant the updates
of each finished group of blocks are summed into one source. As ancre's ``topology.kind:
attnres`` (and its gated form, ``y_j + g_j (mix - y_j)``). torch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def wide(dtype: torch.dtype) -> torch.dtype:
    """At least fp32."""
    return torch.promote_types(dtype, torch.float32)


def sinkhorn_knopp(logits: torch.Tensor, iters: int) -> torch.Tensor:
    """exp(logits) (..., n, n) normalised by columns, then rows, ``iters`` times."""
    logits = logits.to(wide(logits.dtype))
    matrix = (logits - logits.amax((-2, -1), keepdim=True)).exp()
    for _ in range(iters):
        matrix = matrix / matrix.sum(-2, keepdim=True)  # columns
        matrix = matrix / matrix.sum(-1, keepdim=True)  # rows
    return matrix


class Streams(nn.Module):
    """The n streams of ``hyper`` or ``mhc``, with ancre's parameter names."""

    def __init__(self, config, kind: str) -> None:
        super().__init__()
        layers, n, d = config.num_hidden_layers, config.topology_streams, config.hidden_size
        self.kind, self.streams, self.dynamic = kind, n, bool(config.topology_dynamic)
        self.eps, self.iters = config.rms_norm_eps, config.topology_sinkhorn_iters
        self.static_pre = nn.Parameter(torch.zeros(layers, n))
        self.static_res = nn.Parameter(torch.zeros(layers, n, n))
        self.static_post = nn.Parameter(torch.zeros(layers, n))
        if self.dynamic and kind == "hyper":
            self.norm_weight = nn.Parameter(torch.ones(layers, d))
            self.dynamic_alpha = nn.Parameter(torch.zeros(layers, d, 1 + n))
            self.dynamic_beta = nn.Parameter(torch.zeros(layers, d))
            self.alpha_scale = nn.Parameter(torch.zeros(layers))
            self.beta_scale = nn.Parameter(torch.zeros(layers))
        if self.dynamic and kind == "mhc":
            self.norm_weight = nn.Parameter(torch.ones(layers, n * d))
            self.projection = nn.Parameter(torch.zeros(layers, n * d, n * n + 2 * n))
            self.gates = nn.Parameter(torch.zeros(layers, 3))

    def maps(self, j: int, state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Block j's pre (..., n), res (..., n, n; res[s, t]: stream s into t), post (..., n)."""
        pre, res, post = self.static_pre[j], self.static_res[j], self.static_post[j]
        n = self.streams
        if self.kind == "hyper":
            if not self.dynamic:
                return pre, res, post
            weight = self.norm_weight[j].to(state.dtype)
            normed = F.rms_norm(state, state.shape[-1:], weight, self.eps)  # (..., n, D)
            alpha = torch.tanh(normed @ self.dynamic_alpha[j].to(normed.dtype))  # (..., n, 1+n)
            alpha = alpha.to(wide(state.dtype)) * self.alpha_scale[j]
            beta = torch.tanh(normed @ self.dynamic_beta[j].to(normed.dtype)).to(wide(state.dtype))
            return pre + alpha[..., 0], res + alpha[..., 1:], post + beta * self.beta_scale[j]
        if self.dynamic:
            flat = state.flatten(-2)  # (..., nD)
            z = F.rms_norm(flat, flat.shape[-1:], self.norm_weight[j].to(flat.dtype), self.eps)
            projected = (z @ self.projection[j].to(z.dtype)).to(wide(z.dtype))  # (..., n^2+2n)
            gates = self.gates[j]
            pre = pre + gates[0] * projected[..., :n]
            post = post + gates[1] * projected[..., n : 2 * n]
            res = res + gates[2] * projected[..., 2 * n :].unflatten(-1, (n, n))
        mixing = sinkhorn_knopp(res, self.iters)  # (..., n, n)
        return torch.sigmoid(pre), mixing.transpose(-1, -2), 2 * torch.sigmoid(post)

    def run(self, h0: torch.Tensor, blocks, rope, mask, cache) -> torch.Tensor:
        """The blocks over the streams; returns the sum of the streams (what the norm reads)."""
        state = h0.unsqueeze(-2).expand(*h0.shape[:-1], self.streams, h0.shape[-1])  # (B,T,n,D)
        for j, block in enumerate(blocks):
            pre, res, post = self.maps(j, state)
            carry = (res - pre.unsqueeze(-1) * post.unsqueeze(-2)).to(state.dtype)
            pre, post = pre.to(state.dtype), post.to(state.dtype)
            h = (pre.unsqueeze(-1) * state).sum(-2)  # (B, T, D)
            y = block(h, rope, mask, cache)  # (B, T, D)
            state = torch.einsum("...st,...sd->...td", carry, state)  # (B, T, n, D)
            state = state + post.unsqueeze(-1) * y.unsqueeze(-2)
        return state.sum(-2)


class DepthAttention(nn.Module):
    """Attention Residuals, full or by groups of ``topology_attnres_group`` blocks."""

    def __init__(self, config) -> None:
        super().__init__()
        self.kind = "attnres"
        self.group, self.eps = config.topology_attnres_group, config.rms_norm_eps
        self.queries = nn.Parameter(torch.zeros(config.num_hidden_layers, config.hidden_size))
        self.gates = None
        if config.topology_form == "gated":  # h_{j+1} = y_j + g_j (mix - y_j)
            self.gates = nn.Parameter(torch.zeros(config.num_hidden_layers))

    def _inverse_rms(self, source: torch.Tensor) -> torch.Tensor:
        """1 / sqrt(mean(v^2) + eps) per token (B, T), fp32 or wider."""
        norm = torch.linalg.vector_norm(source, dim=-1, dtype=wide(source.dtype))
        return torch.rsqrt(norm.square() / source.shape[-1] + self.eps)

    def run(self, h0: torch.Tensor, blocks, rope, mask, cache) -> torch.Tensor:
        """The blocks, each reading its softmax over depth; returns what the norm reads."""
        sources, scales = [h0], [self._inverse_rms(h0)]
        partial, h = None, h0
        for j, block in enumerate(blocks):
            update = block(h, rope, mask, cache) - h  # v_{j+1} (B, T, D)
            partial = update if partial is None else partial + update
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
            )  # (B, T, S)
            weights = torch.softmax(scores, dim=-1)
            mixed = weights[..., 0:1].to(h.dtype) * candidates[0]
            for i in range(1, len(candidates)):
                mixed = mixed + weights[..., i : i + 1].to(h.dtype) * candidates[i]
            if self.gates is not None:
                y = h + update
                mixed = y + self.gates[j].to(h.dtype) * (mixed - y)
            h = mixed  # h_{j+1} (B, T, D)
        return h
