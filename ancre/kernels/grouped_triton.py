"""The fused mix in groups: two-phase Triton kernels for a static matrix, forward and backward.

The grouping of ``ancre.kernels.grouped`` with the fused kernels of
``ancre.kernels.mix_triton``. Rows in groups of G (``ancre.kernels.traffic.best_group``,
with fp32 partial rows costing 4 / element bytes passes each):

- **Forward.** At the first block g0 of a group, :func:`_partials_kernel` reads
  h_0 .. h_{g0} once (through the table of pointers) and writes the fp32 partial sums
  of the group's G rows; block j = g0 + r then runs the row kernel with its partial row
  and its own group's states h_{g0+1} .. h_j (``HAS_PARTIAL``).
- **Backward.** At the first column c1-1 of a column group c0 .. c1-1 that has rows
  beyond it (k >= c1), :func:`_far_kernel` reads G_{k+1} of those rows once and writes
  their fp32 share of the group's G_c and, from the group's states, their block of dW
  (per-program partial sums, reduced by torch in a fixed order: deterministic). Each
  column then runs the column kernel over its own group's rows, adding the far share
  (``HAS_FAR``).

fp32 partial rows round nothing: every G_c and h_{j+1} is still one fp32 sum, rounded
once. :func:`start_pass` takes this path where the traffic model says it moves less than
the row-by-row kernels (about 12 blocks and up for bf16 states) and the row-by-row
:func:`ancre.kernels.mix_triton.start_pass` otherwise. The partial buffer holds G rows of
fp32 (G x N x 4 bytes) while a pass runs, besides the row scheme's gradient buffer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ancre.kernels import mix_triton
from ancre.kernels.aot import KernelLaunch
from ancre.kernels.traffic import best_group, grouped_passes, row_passes

CPU_BLOCK = 1 << 15
"""Elements per program under the interpreter, whose cost is per program."""
GPU_BLOCK = 1024
"""Elements per program on a GPU: G rows of fp32 accumulators per element stay in registers."""
MAX_GROUP = 16
"""The largest group: its rows live in registers (a power of two of at least G)."""


@triton.jit
def _partials_kernel(
    first_ptr, table_ptr, w_ptr, w_stride, part_ptr, n, count, rows,
    BLOCK: tl.constexpr, ROWS: tl.constexpr, ALIGNED: tl.constexpr,
):  # fmt: skip
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    r = tl.arange(0, ROWS)
    live = r < rows
    acc = tl.zeros([ROWS, BLOCK], dtype=tl.float32)
    for i in range(count):
        state = tl.load(table_ptr + i).to(tl.pointer_type(first_ptr.dtype.element_ty))
        if ALIGNED:  # the host checked that every state is 16-byte aligned
            state = tl.multiple_of(state, 16)
        h = tl.load(state + offsets, mask=mask).to(tl.float32)  # (BLOCK,)
        w = tl.load(w_ptr + r * w_stride + i, mask=live, other=0.0)  # (ROWS,): W[g0 + r, i]
        acc += w[:, None] * h[None, :]
    out = part_ptr + r[:, None] * n + offsets[None, :]
    tl.store(out, acc, mask=live[:, None] & mask[None, :])


@triton.jit
def _far_kernel(
    g_ptr, g_stride, p_ptr, p_stride, own_ptr, far_ptr, partial_ptr, n, rows, cols,
    BLOCK: tl.constexpr, COLS: tl.constexpr, HAS_DW: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    c = tl.arange(0, COLS)
    live = c < cols
    both = live[:, None] & mask[None, :]
    acc = tl.zeros([COLS, BLOCK], dtype=tl.float32)
    if HAS_DW:  # the group's states h_c0 .. h_{c1-1}, stacked (COLS, n)
        own = tl.load(own_ptr + c[:, None] * n + offsets[None, :], mask=both).to(tl.float32)
    for k in range(rows):
        g = tl.load(g_ptr + k * g_stride + offsets, mask=mask).to(tl.float32)  # G_{k+1}
        p = tl.load(p_ptr + k * p_stride + c, mask=live, other=0.0)  # W[k, c0 + c]
        acc += p[:, None] * g[None, :]
        if HAS_DW:
            d = tl.sum(own * g[None, :], axis=1)  # (COLS,)
            tl.store(partial_ptr + (pid * rows + k) * COLS + c, d, mask=live)
    tl.store(far_ptr + c[:, None] * n + offsets[None, :], acc, mask=both)


def _block(device: torch.device) -> int:
    return GPU_BLOCK if device.type == "cuda" else CPU_BLOCK


def _rows_constexpr(count: int) -> int:
    return max(2, triton.next_power_of_2(count))


def partial_sums(
    states: Sequence[torch.Tensor], weights: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """out[r] = sum_i weights[r, i] * states[i] in fp32, one pass over the states.

    Args:
        states: h_0 .. h_{g0}, contiguous, of one dtype.
        weights: (G', g0 + 1) fp32 rows of W (any row stride, unit column stride).
        out: (G', n) fp32.
    """
    n = states[0].numel()
    table = torch.tensor([s.data_ptr() for s in states], dtype=torch.int64,
                         device=states[0].device)  # fmt: skip
    block = _block(states[0].device)
    _partials_kernel[(triton.cdiv(n, block),)](
        states[0], table, weights, weights.stride(0), out, n, len(states), weights.shape[0],
        BLOCK=block, ROWS=_rows_constexpr(weights.shape[0]),
        ALIGNED=mix_triton.states_aligned(states),
    )  # fmt: skip
    return out


def far_share(
    rows: torch.Tensor,
    weights: torch.Tensor,
    own: torch.Tensor | None,
    out: torch.Tensor,
) -> torch.Tensor | None:
    """The rows beyond a column group: their share of its G_c, and their block of dW.

    Args:
        rows: (R, ..., D) G_{k+1} of the rows k >= c1 (a view of the gradient buffer).
        weights: (R, G') W[c1:, c0:c1] (any row stride, unit column stride).
        own: (G', n) the group's states stacked, when dW is wanted, else None.
        out: (G', n) fp32: sum_k W[k, c] G_{k+1}.

    Returns:
        (R, G') fp32 dW[k, c] = <h_c, G_{k+1}>, or None without ``own``.
    """
    n = out.shape[1]
    count, cols = weights.shape
    block = _block(out.device)
    programs = triton.cdiv(n, block)
    width = _rows_constexpr(cols)
    partial = torch.empty(programs, max(count, 1), width, dtype=torch.float32, device=out.device)
    _far_kernel[(programs,)](
        rows, rows.stride(0), weights, weights.stride(0), own if own is not None else out, out,
        partial, n, count, cols, BLOCK=block, COLS=width, HAS_DW=own is not None,
    )  # fmt: skip
    return None if own is None else partial[:, :count, :cols].sum(dim=0)


def launches() -> list[KernelLaunch]:
    """The specialisations the launchers of this module compile on a GPU.

    Per dtype: the partial sums of a group of 8 rows (the group the traffic model picks
    around 48 blocks), and the far rows' share with and without dW. Pointers from
    torch's allocators, ``n`` and the gradient buffer's row stride are 16-byte aligned or
    divisible by 16 for the shapes of training; W's row stride is not.
    """
    specs = []
    for dtype in ("bf16", "fp32"):
        partials = {
            "first_ptr": f"*{dtype}", "table_ptr": "*i64", "w_ptr": "*fp32", "w_stride": "i32",
            "part_ptr": "*fp32", "n": "i32", "count": "i32", "rows": "i32",
            "BLOCK": "constexpr", "ROWS": "constexpr", "ALIGNED": "constexpr",
        }  # fmt: skip
        specs.append(KernelLaunch(
            _partials_kernel, dtype, partials, {"BLOCK": GPU_BLOCK, "ROWS": 8, "ALIGNED": True},
            aligned=("first_ptr", "table_ptr", "w_ptr", "part_ptr", "n"),
            streams={"*table_ptr": "states", "part_ptr": "partial rows"},
        ))  # fmt: skip
        far = {
            "g_ptr": f"*{dtype}", "g_stride": "i32", "p_ptr": "*fp32", "p_stride": "i32",
            "own_ptr": f"*{dtype}", "far_ptr": "*fp32", "partial_ptr": "*fp32", "n": "i32",
            "rows": "i32", "cols": "i32",
            "BLOCK": "constexpr", "COLS": "constexpr", "HAS_DW": "constexpr",
        }  # fmt: skip
        for dw in (True, False):
            streams = {"g_ptr": "gradient rows", "far_ptr": "far rows' share"}
            if dw:
                streams["own_ptr"] = "group states"
            specs.append(KernelLaunch(
                _far_kernel, f"{dtype}{'' if dw else ' no-dW'}", far,
                {"BLOCK": GPU_BLOCK, "COLS": 8, "HAS_DW": dw},
                aligned=("g_ptr", "g_stride", "p_ptr", "own_ptr", "far_ptr", "partial_ptr", "n"),
                streams=streams,
            ))  # fmt: skip
    return specs


class GroupedTape:
    """What the nodes of one grouped forward pass share.

    Attributes:
        weights: The (L, L+1) matrix W of the pass.
        group: G.
        partials: (G, n) fp32 partial sums of the current row group (forward).
        grads: (L, ..., D) row k holds G_{k+1} (backward), in the states' dtype.
        far: (G, n) fp32 share of the rows beyond the current column group, or None.
        d_weights: (L, L+1) fp32 gradient of W.
    """

    def __init__(self, weights: torch.Tensor, group: int) -> None:
        self.weights = weights
        self.group = group
        self.num_layers = weights.shape[0]
        self.partials: torch.Tensor | None = None
        self.grads: torch.Tensor | None = None
        self.far: torch.Tensor | None = None
        self.d_weights: torch.Tensor | None = None
        self.handed_out: list[torch.Tensor] = []  # as in mix_triton.MixTape

    def group_of(self, c: int) -> tuple[int, int]:
        """The columns c0 .. c1-1 of column c's group (rows: the same with L)."""
        c0 = c - c % self.group
        return c0, min(c0 + self.group, self.num_layers + 1)

    def forward(self, j: int, y: torch.Tensor, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """h_{j+1} of block j: the group's partial row plus its own states (no autograd)."""
        w = self.weights.detach().float()  # (L, L+1)
        start = j - j % self.group
        if j == start:
            count = min(self.group, self.num_layers - start)
            if self.partials is None:
                self.partials = torch.empty(self.group, y.numel(), dtype=torch.float32,
                                            device=y.device)  # fmt: skip
            partial_sums(states[: start + 1], w[start : start + count, : start + 1],
                         self.partials[:count])  # fmt: skip
        assert self.partials is not None
        out = mix_triton.mix_forward(
            y, states[start + 1 : j + 1], w[j, start + 1 : j + 1], self.partials[j - start]
        )  # fmt: skip
        if j == self.num_layers - 1:
            self.partials = None
        return out

    def column(
        self,
        c: int,
        h: torch.Tensor,
        incoming: torch.Tensor | None,
        out: torch.Tensor,
        group_states: Sequence[torch.Tensor],
    ) -> None:
        """G_c into ``out`` and column c of dW (see the module docstring).

        Args:
            c: The column (state h_c).
            h: h_c.
            incoming: Its gradient from outside the mix, or None (the embeddings).
            out: Where G_c goes.
            group_states: h_c0 .. h_{c1-1} when c is its group's first column and rows
                lie beyond the group (for their block of dW), else empty.
        """
        assert self.grads is not None
        L = self.num_layers
        w = self.weights.detach().float()
        c0, c1 = self.group_of(c)
        if c == c1 - 1:
            self.far = None
            if c1 < L:
                self.far = torch.empty(c1 - c0, h.numel(), dtype=torch.float32, device=h.device)
                own = None
                if self.d_weights is not None:
                    own = torch.stack([s.reshape(-1) for s in group_states])  # (G', n)
                block = far_share(self.grads[c1:L], w[c1:L, c0:c1], own, self.far)
                if block is not None and self.d_weights is not None:
                    self.d_weights[c1:L, c0:c1] = block
        end = min(c1, L)  # the rows of c's own group
        far = None if self.far is None else self.far[c - c0]
        share = mix_triton.mix_column(h, incoming, self.grads[c:end], w[c:end, c], out, far)
        if self.d_weights is not None:
            self.d_weights[c:end, c] = share
        if c == c0:
            self.far = None


class GroupedFusedMix(torch.autograd.Function):
    """Block j's mix as one autograd node of a :class:`GroupedTape`."""

    @staticmethod
    def forward(ctx, y, weights, tape, j, *states):  # noqa: D102
        out = tape.forward(j, y, states)
        ctx.tape, ctx.j = tape, j
        c0, c1 = tape.group_of(j + 1)
        beyond = j + 1 == c1 - 1 and c1 < tape.num_layers and ctx.needs_input_grad[1]
        group = list(states[c0:]) if beyond else []  # h_c0 .. h_j, inputs of this node
        ctx.beyond = beyond
        ctx.save_for_backward(out, states[0], *group)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        tape, j = ctx.tape, ctx.j
        h_next, h0, *group = ctx.saved_tensors
        num_layers = tape.weights.shape[0]
        if tape.grads is None:  # the last block's node runs first
            tape.grads = grad_out.new_empty((num_layers, *grad_out.shape))
            if ctx.needs_input_grad[1]:
                tape.d_weights = torch.zeros_like(tape.weights, dtype=torch.float32)
        grad_y = tape.grads[j]  # G_{j+1}
        group_states = [*group, h_next] if ctx.beyond else []
        tape.column(j + 1, h_next, grad_out.contiguous(), grad_y, group_states)
        tape.handed_out.append(grad_y)
        state_grads: list[torch.Tensor | None] = [None] * (j + 1)
        grad_weights = None
        if j == 0:
            state_grads[0] = torch.empty_like(h0)
            first = [h0] if tape.group == 1 else []
            tape.column(0, h0, None, state_grads[0], first)
            if tape.d_weights is not None:
                grad_weights = tape.d_weights.to(tape.weights.dtype)
        return grad_y, grad_weights, None, None, *state_grads


def grouped_is_cheaper(num_layers: int, element_bytes: int) -> tuple[bool, int]:
    """Whether the grouped kernels move less than the row kernels, and the group size."""
    partial = 4 / element_bytes
    group = min(best_group(num_layers, partial), MAX_GROUP)
    grouped = sum(grouped_passes(num_layers, group, partial))
    return grouped < sum(row_passes(num_layers)), group


def start_pass(weights: torch.Tensor, group: int | None = None):
    """A mixer for one forward pass over a stack wired by ``weights`` (L, L+1).

    Args:
        weights: W.
        group: Rows per group (at most :data:`MAX_GROUP`); None lets the traffic model
            choose between the grouped and the row-by-row kernels, for bf16 states.
    """
    if group is None:
        cheaper, group = grouped_is_cheaper(weights.shape[0], 2)
        if not cheaper:
            return mix_triton.start_pass(weights)
    if not 1 <= group <= MAX_GROUP:
        raise ValueError(f"a group of the fused mix holds 1 to {MAX_GROUP} rows, got {group}")
    tape = GroupedTape(weights, group)

    def mixer(j: int, y: torch.Tensor, states: Sequence[torch.Tensor]) -> torch.Tensor:
        return GroupedFusedMix.apply(y.contiguous(), weights, tape, j, *states)

    return mixer
