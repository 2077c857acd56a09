"""How many bytes the topology mix must move, and how long that takes at least.

The mix does almost no arithmetic (L(L+1)/2 weighted adds per token and feature), so
its time is bounded by memory traffic. For L blocks and S bytes per state (tokens x
hidden x element size), the fused kernels of ``ancre.kernels.mix_triton`` move:

- forward, block j: y_j and h_0 .. h_j read, h_{j+1} written: (j + 3) S; over the
  blocks, sum_j (j + 3) S = (L(L+1)/2 + 2L) S;
- backward, column c of the column scheme: h_c, its incoming gradient (c >= 1), the
  gradients G_{c+1} .. G_L read and G_c written: (L - c + 3) S for c >= 1 and (L + 2) S
  for the embeddings; over the columns about as much as the forward, plus L + 2 passes.

A lower bound on time is bytes / HBM bandwidth. ancre recomputes block internals
(``train.recompute``) but keeps the states the mix reads, so the mix
runs once per step; a design that recomputed whole layers would run the forward mix
twice (``recompute_mix``), which the model can show too.
"""

from __future__ import annotations

from dataclasses import dataclass

HBM_BYTES_PER_S = {"A100": 2.039e12, "H100": 3.35e12, "H200": 4.8e12}
"""Nominal HBM bandwidth of the SXM parts (80 GB A100, H100, 141 GB H200)."""


@dataclass(frozen=True)
class MixTraffic:
    """Bytes the mix moves in one micro-batch's forward and backward.

    Attributes:
        forward: Bytes of the forward mixes of all blocks (twice with whole-layer recompute).
        backward: Bytes of the column backward.
    """

    forward: int
    backward: int

    @property
    def total(self) -> int:
        """Forward and backward together."""
        return self.forward + self.backward

    def seconds(self, device: str) -> float:
        """The lower bound on time at a device's nominal HBM bandwidth."""
        return self.total / HBM_BYTES_PER_S[device]


def mix_traffic(
    num_layers: int, tokens: int, hidden: int, element_bytes: int = 2, recompute_mix: bool = False
) -> MixTraffic:
    """The bytes of the fused mix for one micro-batch.

    Args:
        num_layers: L.
        tokens: Tokens of the micro-batch (batch x sequence length).
        hidden: D.
        element_bytes: 2 for bf16 states, 4 for fp32.
        recompute_mix: The forward mix runs again in the backward (whole-layer recompute).

    Returns:
        The traffic.
    """
    state = tokens * hidden * element_bytes
    forward = sum(j + 3 for j in range(num_layers)) * state
    backward = (sum(num_layers - c + 3 for c in range(1, num_layers + 1)) + num_layers + 2) * state
    return MixTraffic(forward * (2 if recompute_mix else 1), backward)
