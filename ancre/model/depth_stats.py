"""Per-block statistics of the residual stream: how big each state is, and who wrote it.

Over one forward pass of a probe batch (the first validation sequences), with h_j the
input of block j, y_j its output, u_j = y_j - h_j its update and h_L what the final
norm reads:

- ``state_rms``: RMS(h_0), ..., RMS(h_{L-1}), RMS(h_L) (L+1 numbers);
- ``update_ratio``: ||u_j|| / ||h_j|| per block (L numbers), how much block j changes
  the state it reads;
- ``final_share``: the share of h_L that the embeddings and each block's update
  account for (L+1 numbers, summing to one). Every kind writes h_L as a linear
  combination h_L = c_0 h_0 + sum_j c_{j+1} u_j, with coefficients from its reads
  matrix R (``ancre.model.topology.effective``; per token for the input-dependent kinds), and
  the share of term k is ``sum_t c_k <b_k, h_L> / sum_t ||h_L||^2`` over the tokens t,
  with b_0 = h_0 (the embeddings) and b_{j+1} = u_j: the projection of that term on
  h_L. A share can be negative (a term that points against the final state).
- ``bf16_rounding``: ||bf16(h_{j+1}) - h_{j+1}|| / ||u_j|| per block (h_L the final
  state): the part of block j's update that storing the state it writes in bf16
  would round away, relative to the update. Measured on a run whose states are
  wider than bf16 (in a bf16 run the rounding has already happened, and this reads 0).

Norms and products are taken in fp32 (fp64 for the shares) whatever dtype the states
have. The statistics cost one forward pass without gradients over the probe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ancre.model.multiway import Multiway, residual_of

Runner = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class BlockStats:
    """The statistics of one probe pass (see the module).

    Attributes:
        state_rms: (L+1,) RMS of h_0 .. h_{L-1} (the blocks' inputs) and of the final
            state.
        update_ratio: (L,) ||y_j - h_j|| / ||h_j||.
        final_share: (L+1,) share of the final state of the embeddings and of each
            block's update; sums to one.
        bf16_rounding: (L,) ||bf16(h_{j+1}) - h_{j+1}|| / ||y_j - h_j||.
    """

    state_rms: list[float]
    update_ratio: list[float]
    final_share: list[float]
    bf16_rounding: list[float]

    def to_dict(self) -> dict[str, list[float]]:
        """The record written under ``block_stats`` in metrics.jsonl."""
        return {
            "state_rms": self.state_rms,
            "update_ratio": self.update_ratio,
            "final_share": self.final_share,
            "bf16_rounding": self.bf16_rounding,
        }


class DepthRecorder:
    """Keeps what each block read and wrote during one forward pass.

    A block of four inputs (``ancre.model.multiway``) is recorded by its residual input.
    """

    def __init__(self) -> None:
        self.embeddings: torch.Tensor | None = None
        self.inputs: list[torch.Tensor] = []
        self.updates: list[torch.Tensor] = []
        self.final: torch.Tensor | None = None

    def wrap(self, block: Runner) -> Runner:
        """``block`` as the topology calls it, recording its input and update."""

        def run(x: torch.Tensor | Multiway, *args, **kwargs) -> torch.Tensor:
            y = block(x, *args, **kwargs)  # (..., D)
            h = residual_of(x)  # the state the update is added to
            self.inputs.append(h.detach())
            self.updates.append((y.detach().float() - h.detach().float()).to(h.dtype))
            return y

        return run

    def stats(self, reads: torch.Tensor) -> BlockStats:
        """The statistics of the recorded pass.

        Args:
            reads: (1 or N, L+1, L+1) reads matrix R of the topology: one for a static
                wiring, or one per token (N = B * T) for an input-dependent one.

        Returns:
            The statistics.

        Raises:
            RuntimeError: No forward pass was recorded.
        """
        if self.final is None or self.embeddings is None or not self.inputs:
            raise RuntimeError("no forward pass was recorded")
        inputs = [h.float() for h in self.inputs]
        updates = [u.float() for u in self.updates]
        final = self.final.float()
        rms = [float(h.pow(2).mean().sqrt()) for h in (*inputs, final)]
        pairs = zip(updates, inputs, strict=True)
        ratio = [float(u.norm() / h.norm().clamp_min(1e-30)) for u, h in pairs]
        written = zip(updates, (*inputs[1:], final), strict=True)  # u_j, h_{j+1}
        rounding = [
            float((h.bfloat16().float() - h).norm() / u.norm().clamp_min(1e-30)) for u, h in written
        ]
        shares = final_shares(reads, [self.embeddings.float(), *updates], final)
        return BlockStats(rms, ratio, shares, rounding)


def final_shares(
    reads: torch.Tensor, terms: list[torch.Tensor], final: torch.Tensor
) -> list[float]:
    """The share of the final state of each term (h_0, u_0, ..., u_{L-1}), see the module.

    Args:
        reads: (1 or N, L+1, L+1) R over x_0 and the block outputs x_{j+1} = y_j; or, for a
            wiring that mixes m equal parts of the width (Frac-Connections), (1 or N, L+1,
            L+1, m, m): the weight of each part of x_i in each part of a reading.
        terms: The L+1 terms h_0, u_0 .. u_{L-1}, each (..., D) with N positions.
        final: The final state (..., D).

    Returns:
        L+1 shares.
    """
    n = len(terms) - 1
    reads = reads.double().to(final.device)
    if reads.dim() == 3:  # one weight per source: 1 x 1 maps
        reads = reads[..., None, None]
    tokens, parts = reads.shape[0], reads.shape[-1]
    eye = torch.eye(parts, dtype=torch.float64, device=final.device)
    # maps of x_0 .. x_L over the terms: x_0 = h_0, x_{k+1} = h_k + u_k
    outputs = torch.zeros(tokens, n + 1, n + 1, parts, parts, dtype=torch.float64,
                          device=final.device)  # fmt: skip
    outputs[:, 0, 0] = eye
    for k in range(n):
        block_input = torch.einsum("tmab,tmcbd->tcad", reads[:, k, : k + 1], outputs[:, : k + 1])
        outputs[:, k + 1] = block_input
        outputs[:, k + 1, k + 1] += eye
    maps = torch.einsum("tmab,tmcbd->tcad", reads[:, n], outputs)  # (1 or N, L+1, m, m)
    flat = final.reshape(-1, parts, final.shape[-1] // parts).double()  # (N, m, D/m)
    dots = []
    for c, term in enumerate(terms):
        part = term.reshape(-1, parts, term.shape[-1] // parts).double()  # (N, m, D/m)
        dots.append((torch.einsum("tab,tbd->tad", maps[:, c], part) * flat).sum())
    return (torch.stack(dots) / flat.pow(2).sum()).tolist()


@contextlib.contextmanager
def recording(model: torch.nn.Module, recorder: DepthRecorder) -> Iterator[None]:
    """While open, the model's forward passes record into ``recorder``.

    The model (``ancre.model.transformer.Transformer``) reads ``model.depth_recorder``.
    """
    model.depth_recorder = recorder
    try:
        yield
    finally:
        model.depth_recorder = None
