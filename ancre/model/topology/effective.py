"""The effective connection matrix of wirings that are not written as one (docs/topologies.md).

Every kind of ``ancre.model`` feeds block j a linear combination of the embeddings
``x_0`` and the outputs of the blocks before it, ``x_{i+1} = y_i``. The *reads* matrix R,
(L+1) x (L+1) and lower-triangular, holds these coefficients: row i is the input of
block i (``h_i``), row L what the final norm reads, over ``x_0 .. x_i``. For the
static kinds R is a function of the parameters; for the input-dependent ones it
differs from token to token, and is recorded during a forward pass over a probe batch.

The snapshot's matrix is R rewritten in the convention of docs/method.md, where the
states are the block inputs: ``h_{j+1} = d_j y_j + sum_{i<=j} P[j, i] h_i``. With
``R = D + S`` (D diagonal, S strictly lower), ``d_j = R[j+1, j+1]`` and
``P = S[1:] R^{-1}``, which needs every ``d`` to be non-zero (the snapshot averages only
the tokens where it is finite). For Ancre ``d_j = 1``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ancre.kernels import MixBackend
from ancre.model.topology.base import Topology
from ancre.snapshot import TopologySnapshot

PROBE_SEQUENCES = 4
"""Sequences of the validation set (its first ones) over which an input-dependent
wiring's matrix is averaged for a snapshot."""


def method_matrix(reads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewrites reads matrices R in the states-are-block-inputs form of docs/method.md.

    Args:
        reads: (..., L+1, L+1) lower-triangular R over x_0 .. x_L.

    Returns:
        P (..., L, L+1), zero above the diagonal, and d (..., L), the weight of each
        block's own output: ``h_{j+1} = d_j y_j + sum_{i<=j} P[j, i] h_i``. Differentiable.
    """
    size = reads.shape[-1]
    eye = torch.eye(size, dtype=reads.dtype, device=reads.device)
    inverse = torch.linalg.solve_triangular(reads, eye.expand_as(reads), upper=False)
    strict = reads.tril(-1)  # (..., L+1, L+1)
    matrix = strict[..., 1:, :] @ inverse  # (..., L, L+1)
    return matrix.tril(), reads.diagonal(dim1=-2, dim2=-1)[..., 1:]


@dataclass(frozen=True)
class WiringSummary:
    """The effective wiring of one model, averaged over the tokens of a probe batch.

    Attributes:
        matrix: (L, L+1) mean of P over the tokens where it is finite.
        spread: (L, L+1) standard deviation of P over those tokens; None when static.
        own_output: (L,) mean of d, the weight of each block's own output.
        reads: (L+1, L+1) mean of R.
        tokens: Tokens averaged over (1 when static).
    """

    matrix: torch.Tensor
    spread: torch.Tensor | None
    own_output: torch.Tensor
    reads: torch.Tensor
    tokens: int


def summarise(reads: torch.Tensor, static: bool) -> WiringSummary:
    """Averages per-token reads matrices (N, L+1, L+1) into a :class:`WiringSummary`."""
    reads = reads.detach().double().cpu()  # fp64: the inverse of R for the summary only
    matrix, own = method_matrix(reads)  # (N, L, L+1), (N, L)
    finite = torch.isfinite(matrix).flatten(1).all(1) & torch.isfinite(own).all(1)  # (N,)
    if not bool(finite.any()):
        matrix = torch.zeros_like(matrix[:1])
        own = torch.zeros_like(own[:1])
    else:
        matrix, own = matrix[finite], own[finite]
    spread = None if static else matrix.std(0, correction=0).float()
    return WiringSummary(
        matrix=matrix.mean(0).float(),
        spread=spread,
        own_output=own.mean(0).float(),
        reads=reads.mean(0).float(),
        tokens=reads.shape[0],
    )


class LearnedWiring(Topology):
    """Base of the kinds whose matrix is computed from their reads matrix R.

    A subclass implements :meth:`reads` (from its parameters when static, from what
    :meth:`recording` kept when input-dependent) and :meth:`raw_parameters`.

    Attributes:
        dynamic: Whether the wiring depends on the input (its snapshot needs a probe).
    """

    dynamic = False

    def __init__(self, num_layers: int, mix: MixBackend) -> None:
        super().__init__(num_layers, mix)
        self._recording: list[tuple[torch.Tensor, ...]] | None = None
        self._recorded: list[tuple[torch.Tensor, ...]] | None = None

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """While open, forward passes keep the per-token weights of every block."""
        self._recording = []
        try:
            yield
        finally:
            self._recorded, self._recording = self._recording, None

    def _record(self, *weights: torch.Tensor) -> None:
        """Keeps one block's per-token weights, each (B, T, ...), as (B*T, ...) fp32."""
        if self._recording is not None:
            self._recording.append(tuple(w.detach().float().flatten(0, 1) for w in weights))

    def recorded(self) -> list[tuple[torch.Tensor, ...]]:
        """What the last :meth:`recording` kept, one tuple per block in call order.

        Raises:
            RuntimeError: Nothing was recorded: an input-dependent wiring has no matrix
                without a probe batch.
        """
        if not self._recorded:
            raise RuntimeError(
                f"the {self.parameterisation} wiring depends on the input: run a probe batch "
                "inside topology.recording() before asking for its matrix"
            )
        return self._recorded

    def reads(self) -> torch.Tensor:
        """(N, L+1, L+1) reads matrices: N = 1 when static, else the recorded tokens."""
        raise NotImplementedError

    def raw_parameters(self) -> dict[str, list]:
        """The kind's parameters by name, as nested lists."""
        return {name: p.detach().float().cpu().tolist() for name, p in self.named_parameters()}

    def summary(self) -> WiringSummary:
        """The wiring averaged over the last recorded probe (or exact, when static)."""
        return summarise(self.reads(), static=not self.dynamic)

    def matrix(self) -> torch.Tensor:
        """The (L, L+1) effective matrix P (averaged over the probe when input-dependent)."""
        return self.summary().matrix

    def snapshot(self, step: int, tokens: int) -> TopologySnapshot:
        """P, its spread over the probe, d, R and the raw parameters (ancre.snapshot)."""
        summary = self.summary()
        probe = None
        if self.dynamic:
            probe = (
                f"{summary.tokens} tokens: the first {PROBE_SEQUENCES} sequences of the "
                "validation set"
            )
        return TopologySnapshot(
            step=step,
            tokens=tokens,
            num_layers=self.num_layers,
            parameterisation=self.parameterisation,
            temperature=None,
            logits=None,
            matrix=summary.matrix.tolist(),
            own_output=summary.own_output.tolist(),
            reads=summary.reads.tolist(),
            spread=None if summary.spread is None else summary.spread.tolist(),
            probe=probe,
            raw=self.raw_parameters(),
            formula=self.formula(),
        )
