"""The mix of a static matrix in plain PyTorch: grouped forward, column-scheme backward.

For block j with output y_j and the states h_0 .. h_j (docs/method.md)::

    h_{j+1} = y_j + sum_{i<=j} W[j, i] * h_i

Row by row, block j reads j+1 states: L(L+1)/2 state reads per forward. When W does
not depend on the activations (Ancre, uniform, fixed, DenseFormer, any frozen matrix),
the sums of several future rows can share one pass over the old states.

**Forward, in groups of G rows.** When block g0 (a multiple of G) has its output, one
matrix product over the contiguous copy of h_0 .. h_{g0} writes the partial sums of
the group's rows::

    part_r = sum_{i <= g0} W[g0 + r, i] h_i        r = 0 .. G-1   (one pass, g0 + 1 reads)

and block j = g0 + r adds only its own group's states, h_{g0+1} .. h_j::

    h_{j+1} = y_j + part_r + sum_{g0 < i <= j} W[j, i] h_i

States are read about L^2 / (2G) + L (G - 1) / 2 times instead of L^2 / 2, least near
G = sqrt(L) (``ancre.kernels.traffic.best_group`` picks G from that count). The pass
keeps a contiguous copy of the states in the accumulation dtype while the forward
runs (each written once) and lets it go after the last block: autograd saves nothing
more than the states themselves, which the blocks hold anyway.

**Backward, the column scheme** of ``ancre.kernels.mix_triton``, in groups of columns.
Let G_c be the full gradient of h_c: the gradient autograd delivers to the node that
made h_c (``incoming``: through the next block, or the head) plus the mix terms of
every later row::

    G_c = incoming_c + sum_{k >= c} W[k, c] G_{k+1}        dW[k, c] = <h_c, G_{k+1}>

The node that made h_c computes column c; the column of the embeddings is computed by
the first block's node, which also returns all of dW. The other nodes return no
gradient for earlier states: their share is added when each state's column is
computed, and autograd runs the node that made h_c only after every node that read
it. For a group of columns c0 .. c1-1, the rows k >= c1 (whose G_{k+1} are all known
when the group's first column is reached) are read once for all of its columns, two
matrix products (their share of G_c, and their block of dW); each column then adds
its own group's rows. The gradients live in one (L+1, N) buffer in the accumulation
dtype, so every sum above is one BLAS call over contiguous rows.

The sums run in fp32 (fp64 for fp64 states), as in ``ancre.kernels.reference.mix``,
whose values this computes up to the order of fp32 additions; the result takes y's
dtype. Deterministic: no atomics, a fixed order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ancre.kernels.reference import accumulation_dtype
from ancre.kernels.traffic import best_group


class GroupedPass:
    """What the mix nodes of one forward pass share: the group partials and gradients.

    Attributes:
        weights: The (L, L+1) matrix W of the pass (possibly requiring grad).
        group: G, rows (and columns) per group.
        copies: (L+1, N) contiguous copy of the states while the forward runs, else None.
        partials: (G, N) the current row group's partial sums, else None.
        grads: (L+1, N) row c holds G_c once column c is computed (backward).
        d_weights: (L, L+1) the gradient of W, filled group by group (backward).
        far: Whether the current column group has rows beyond it (backward); their
            share of its columns is written into those columns' rows of ``grads``.
    """

    def __init__(self, weights: torch.Tensor, group: int) -> None:
        if group < 1:
            raise ValueError(f"a group holds at least one row, got {group}")
        self.weights = weights
        self.group = group
        self.num_layers = weights.shape[0]
        self.copies: torch.Tensor | None = None
        self.partials: torch.Tensor | None = None
        self.grads: torch.Tensor | None = None
        self.d_weights: torch.Tensor | None = None
        self.far = False
        self._constant: torch.Tensor | None = None
        # The rows of `grads` handed to autograd stay referenced here, so autograd
        # never takes one over to accumulate into in place: later columns read them.
        self.handed_out: list[torch.Tensor] = []

    def constant(self, wide: torch.dtype) -> torch.Tensor:
        """W detached in the accumulation dtype, made once per pass (nodes read it often)."""
        if self._constant is None or self._constant.dtype != wide:
            self._constant = self.weights.detach().to(wide)
        return self._constant

    def forward(self, j: int, y: torch.Tensor, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """h_{j+1} of block j (no autograd), grouped as the module docstring says."""
        if len(states) != j + 1:
            raise ValueError(f"block {j} mixes {j + 1} states, got {len(states)}")
        wide = accumulation_dtype(y.dtype)
        w = self.constant(wide)  # (L, L+1)
        if j == 0:
            self.copies = y.new_empty((self.num_layers + 1, y.numel()), dtype=wide)
            self.copies[0] = states[0].reshape(-1)
        assert self.copies is not None, "block 0's mix runs first in a pass"
        start = j - j % self.group  # g0
        if j == start:
            rows = slice(start, min(start + self.group, self.num_layers))
            self.partials = w[rows, : start + 1] @ self.copies[: start + 1]  # (G, N)
        assert self.partials is not None
        out = y.reshape(-1).to(wide) + self.partials[j - start]  # (N,) a new tensor
        if j > start:  # the group's own states h_{g0+1} .. h_j
            out.addmv_(self.copies[start + 1 : j + 1].T, w[j, start + 1 : j + 1])
        self.copies[j + 1] = out
        h_next = out.to(y.dtype).view(y.shape)  # (..., D)
        if j == self.num_layers - 1:  # the last block: the copy is not needed again
            self.copies, self.partials = None, None
        return h_next

    def group_of(self, c: int) -> tuple[int, int]:
        """The columns c0 .. c1-1 of column c's group."""
        c0 = c - c % self.group
        return c0, min(c0 + self.group, self.num_layers + 1)

    def column(
        self,
        c: int,
        incoming: torch.Tensor | None,
        wide: torch.dtype,
        states: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Computes G_c into row c of the gradient buffer, and column c of dW.

        Args:
            c: The state h_c (0 = the embeddings).
            incoming: The gradient autograd delivered to h_c, or None (the embeddings).
            wide: The accumulation dtype.
            states: What dW reads of the states (empty without dW): h_c0 .. h_c when c
                is its group's first column and rows lie beyond the group, else h_c
                when rows of its group read it, else nothing.

        Returns:
            G_c, a (N,) row of the buffer.
        """
        assert self.grads is not None
        L = self.num_layers
        w = self.constant(wide)  # (L, L+1)
        c0, c1 = self.group_of(c)
        if c == c1 - 1:  # the group's first column: the rows k >= c1, read once for all
            self.far = c1 < L
            if self.far:
                rows = self.grads[c1 + 1 : L + 1]  # (L - c1, N): G_{k+1}, k >= c1
                # their share of G_c0 .. G_{c1-1}, written where those columns will sum
                torch.mm(w[c1:L, c0:c1].T, rows, out=self.grads[c0:c1])
                if self.d_weights is not None:
                    own = torch.stack([s.reshape(-1).to(wide) for s in states])  # (c1-c0, N)
                    self.d_weights[c1:L, c0:c1] = rows @ own.T  # (L - c1, c1 - c0)
        g = self.grads[c]  # (N,): the far rows' share already, when there are far rows
        if incoming is not None and self.far:
            g.add_(incoming.reshape(-1))
        elif incoming is not None:
            g.copy_(incoming.reshape(-1))
        elif not self.far:
            g.zero_()
        end = min(c1, L)  # the group's own rows k = c .. c1-1 (no row L)
        if end > c:
            rows = self.grads[c + 1 : end + 1]  # (end - c, N): G_{k+1}
            g.addmv_(rows.T, w[c:end, c])
            if self.d_weights is not None:
                self.d_weights[c:end, c] = rows @ states[-1].reshape(-1).to(wide)
        return g


class GroupedMix(torch.autograd.Function):
    """Block j's mix as one autograd node of a :class:`GroupedPass`.

    For dW, node j saves (through ``save_for_backward``, so that no reference cycle
    outlives the graph) what its column reads: its output h_{j+1} when a later row of its
    group reads it, and the group's states h_c0 .. h_{j+1} (its inputs and output) when
    column j+1 is the group's first and rows lie beyond the group; node 0 also h_0. The
    last state h_L is read by no row, so nothing is saved that the blocks do not hold.
    """

    @staticmethod
    def forward(ctx, y, weights, tape, j, *states):  # noqa: D102
        ctx.tape, ctx.j, ctx.y_dtype = tape, j, y.dtype
        ctx.shape = y.shape
        ctx.state_dtype = states[0].dtype
        h_next = tape.forward(j, y, states)
        saved: list[torch.Tensor] = []
        if ctx.needs_input_grad[1]:  # only what dW reads: no state the blocks do not hold
            c0, c1 = tape.group_of(j + 1)
            if j + 1 == c1 - 1 and c1 < tape.num_layers:  # the rows beyond the group
                saved = [*states[c0:], h_next]
            elif min(c1, tape.num_layers) > j + 1:  # rows of its own group read h_{j+1}
                saved = [h_next]
            if j == 0:
                saved.append(states[0])
        ctx.save_for_backward(*saved)
        return h_next

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        tape, j = ctx.tape, ctx.j
        saved = list(ctx.saved_tensors)
        wide = accumulation_dtype(ctx.y_dtype)
        if tape.grads is None:  # the last block's node runs first
            tape.grads = grad_out.new_empty((tape.num_layers + 1, grad_out.numel()), dtype=wide)
            if ctx.needs_input_grad[1]:
                tape.d_weights = torch.zeros_like(tape.weights, dtype=wide)
        first = saved[-1:] if j == 0 else []  # h_0
        column_states = saved[: len(saved) - len(first)]
        g = tape.column(j + 1, grad_out, wide, column_states)
        grad_y = g.view(ctx.shape).to(ctx.y_dtype)  # G_{j+1}, the gradient of y_j too
        tape.handed_out.append(grad_y)
        state_grads: list[torch.Tensor | None] = [None] * (j + 1)
        grad_weights = None
        if j == 0:
            g0 = tape.column(0, None, wide, first)
            state_grads[0] = g0.view(ctx.shape).to(ctx.state_dtype)
            tape.handed_out.append(state_grads[0])
            if tape.d_weights is not None:
                grad_weights = tape.d_weights.to(tape.weights.dtype)
        return grad_y, grad_weights, None, None, *state_grads


def grouped_backend(weights: torch.Tensor, group: int | None = None):
    """A mixer for one forward pass over a stack wired by ``weights`` (L, L+1).

    Args:
        weights: The matrix W of the pass.
        group: Rows per group; None chooses it from L (``best_group``).
    """
    tape = GroupedPass(weights, best_group(weights.shape[0]) if group is None else group)

    def mixer(j: int, y: torch.Tensor, states: Sequence[torch.Tensor]) -> torch.Tensor:
        return GroupedMix.apply(y, weights, tape, j, *states)

    return mixer
