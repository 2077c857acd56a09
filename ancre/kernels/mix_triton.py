"""Fused Triton kernels for the topology mix, forward and backward.

Forward, block j: ``h_{j+1} = y_j + sum_{i<=j} P[j, i] * h_i`` in one kernel that
reads y and each h_i once (through a small table of pointers, so the states stay
separate tensors), accumulates in fp32 and writes h_{j+1} once: j + 3 passes over
memory instead of the ~3 per term of an eager loop.

Backward, the column scheme. Autograd runs the mix nodes in reverse: M_{L-1} (which
made h_L), ..., M_0 (which made h_1). Let G_i be the full gradient of h_i. It is the
gradient reaching h_i through the next block and the head (``incoming``, which
autograd delivers to the node that made h_i), plus the mix terms of every later row:

    G_c = incoming_c + sum_{k >= c} P[k, c] * G_{k+1}
    dP[k, c] = <h_c, G_{k+1}>                          for every k >= c

Node M_{c-1} computes column c in one kernel that reads h_c, incoming_c and
G_{c+1} .. G_L once each, writes G_c once (into a buffer of all G's, which later
columns read with one stride) and writes per-program partial sums of column c of dP.
Node M_0 does column 1 and then column 0 (the embeddings), and returns all of dP.
The other nodes return no gradient for the earlier states: their share is added
when the column of each state is computed. Autograd's ordering makes this safe: the
node that made h_c runs only after every node that took h_c as an input. Each
backward moves about as many bytes as the forward: sum_c (L - c + 2) passes.

dP is reduced in fp32: each program writes its partial sums to its own row, and the
rows are summed by torch in a fixed order, so results are identical run to run (no
atomics). bf16 results are rounded to nearest-even from the fp32 accumulator with a
few integer operations on its bits: what a GPU's conversion does, and what Triton's
interpreter (which truncates) would otherwise not.

Kernels run on CUDA, and on the CPU under ``TRITON_INTERPRET=1`` (set before this
module is imported), which is how the tests check them against
``ancre.kernels.reference``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ancre.kernels.aot import KernelLaunch

CPU_BLOCK = 1 << 15
"""Elements per program under the interpreter, whose cost is per program."""
GPU_BLOCK = 2048
"""Elements per program on a GPU."""
VECTOR_BYTES = 16
"""Alignment of a state that the forward kernel may load with 16-byte vectors."""


@triton.jit
def _rounded(acc, dtype: tl.constexpr):
    """fp32 -> ``dtype``; bf16 rounded to nearest-even (NaN kept)."""
    if dtype == tl.bfloat16:
        bits = acc.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        nearest = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        return tl.where(acc == acc, nearest, acc.to(tl.bfloat16))
    return acc.to(dtype)


@triton.jit
def _mix_forward_kernel(
    y_ptr, table_ptr, w_ptr, out_ptr, part_ptr, n, count, BLOCK: tl.constexpr,
    ALIGNED: tl.constexpr, HAS_PARTIAL: tl.constexpr,
):  # fmt: skip
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    acc = tl.load(y_ptr + offsets, mask=mask).to(tl.float32)
    if HAS_PARTIAL:  # the fp32 partial sum of the earlier states (ancre.kernels.grouped_triton)
        acc += tl.load(part_ptr + offsets, mask=mask)
    for i in range(count):
        state = tl.load(table_ptr + i).to(tl.pointer_type(y_ptr.dtype.element_ty))
        if ALIGNED:  # the host checked that every state is 16-byte aligned
            state = tl.multiple_of(state, 16)  # so its loads can be 16-byte vectors
        acc += tl.load(w_ptr + i) * tl.load(state + offsets, mask=mask).to(tl.float32)
    tl.store(out_ptr + offsets, _rounded(acc, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _mix_column_kernel(
    h_ptr, incoming_ptr, g_ptr, g_stride, p_ptr, p_stride, out_ptr, partial_ptr, far_ptr,
    n, rows, HAS_INCOMING: tl.constexpr, BLOCK: tl.constexpr, HAS_FAR: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    h = tl.load(h_ptr + offsets, mask=mask).to(tl.float32)
    if HAS_INCOMING:
        acc = tl.load(incoming_ptr + offsets, mask=mask).to(tl.float32)
    else:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_FAR:  # the fp32 share of the rows beyond the column's group (grouped_triton)
        acc += tl.load(far_ptr + offsets, mask=mask)
    for k in range(rows):
        g = tl.load(g_ptr + k * g_stride + offsets, mask=mask).to(tl.float32)
        acc += tl.load(p_ptr + k * p_stride) * g
        tl.store(partial_ptr + pid * rows + k, tl.sum(h * g, axis=0))
    tl.store(out_ptr + offsets, _rounded(acc, out_ptr.dtype.element_ty), mask=mask)


def _block(device: torch.device) -> int:
    return GPU_BLOCK if device.type == "cuda" else CPU_BLOCK


def mix_forward(
    y: torch.Tensor,
    states: Sequence[torch.Tensor],
    weights: torch.Tensor,
    partial: torch.Tensor | None = None,
) -> torch.Tensor:
    """h_{j+1} = y + partial + sum_i weights[i] * states[i], fused (no autograd).

    Args:
        y: Output of block j, contiguous, (..., D).
        states: The states to add (h_0 .. h_j, or a group's own), contiguous, typed like y.
        weights: (len(states),) fp32 weights.
        partial: fp32 (y.numel(),) sum of the other states, or None.

    Returns:
        h_{j+1}, shaped and typed like y.
    """
    out = torch.empty_like(y)
    n = y.numel()
    table = torch.tensor([s.data_ptr() for s in states] or [0], dtype=torch.int64,
                         device=y.device)  # fmt: skip
    block = _block(y.device)
    _mix_forward_kernel[(triton.cdiv(n, block),)](
        y, table, weights.contiguous(), out, partial if partial is not None else y, n,
        len(states), BLOCK=block, ALIGNED=states_aligned(states),
        HAS_PARTIAL=partial is not None,
    )  # fmt: skip
    return out


def states_aligned(states: Sequence[torch.Tensor]) -> bool:
    """Whether every state starts on a 16-byte boundary (its loads can be vectors).

    A pointer the kernel reads from the table carries no alignment the compiler can
    see, so the kernel is told: with ``ALIGNED`` it hints 16-byte alignment, which is
    only correct when this holds. Tensors from torch's allocators are aligned; a view
    into the middle of another tensor may not be, and then the unhinted kernel runs.
    """
    return all(s.data_ptr() % VECTOR_BYTES == 0 for s in states)


def launches() -> list[KernelLaunch]:
    """The specialisations the launchers of this module compile on a GPU.

    For :mod:`ancre.kernels.aot`: per dtype, the forward with aligned states, with and
    without a group's partial sum, and the column kernel with and without an incoming
    gradient and the far rows' share. Pointers from torch's allocators, the element
    count and the gradient buffer's row stride are 16-byte aligned or divisible by 16
    for the shapes of training (``D`` a multiple of 16), and so are the rows of the
    fp32 partial buffers; the row count and P's stride are not.
    """
    specs = []
    for dtype in ("bf16", "fp32"):
        forward = {
            "y_ptr": f"*{dtype}", "table_ptr": "*i64", "w_ptr": "*fp32", "out_ptr": f"*{dtype}",
            "part_ptr": "*fp32", "n": "i32", "count": "i32", "BLOCK": "constexpr",
            "ALIGNED": "constexpr", "HAS_PARTIAL": "constexpr",
        }  # fmt: skip
        for partial in (False, True):
            streams = {"y_ptr": "y", "*table_ptr": "states", "out_ptr": "out"}
            if partial:
                streams["part_ptr"] = "partial"
            specs.append(KernelLaunch(
                _mix_forward_kernel, f"{dtype}{' partial' if partial else ''}", forward,
                {"BLOCK": GPU_BLOCK, "ALIGNED": True, "HAS_PARTIAL": partial},
                aligned=("y_ptr", "table_ptr", "w_ptr", "out_ptr", "part_ptr", "n"),
                streams=streams,
            ))  # fmt: skip
        column = {
            "h_ptr": f"*{dtype}", "incoming_ptr": f"*{dtype}", "g_ptr": f"*{dtype}",
            "g_stride": "i32", "p_ptr": "*fp32", "p_stride": "i32", "out_ptr": f"*{dtype}",
            "partial_ptr": "*fp32", "far_ptr": "*fp32", "n": "i32", "rows": "i32",
            "HAS_INCOMING": "constexpr", "BLOCK": "constexpr", "HAS_FAR": "constexpr",
        }  # fmt: skip
        for incoming in (True, False):
            for far in (False, True):
                streams = {"h_ptr": "h", "g_ptr": "gradient rows", "out_ptr": "out"}
                if incoming:
                    streams["incoming_ptr"] = "incoming"
                if far:
                    streams["far_ptr"] = "far rows' share"
                label = f"{dtype}{'' if incoming else ' no-incoming'}{' far' if far else ''}"
                specs.append(KernelLaunch(
                    _mix_column_kernel, label, column,
                    {"HAS_INCOMING": incoming, "BLOCK": GPU_BLOCK, "HAS_FAR": far},
                    aligned=("h_ptr", "incoming_ptr", "g_ptr", "g_stride", "p_ptr", "out_ptr",
                             "partial_ptr", "far_ptr", "n"),
                    streams=streams,
                ))  # fmt: skip
    return specs


def mix_column(
    h: torch.Tensor,
    incoming: torch.Tensor | None,
    later: torch.Tensor,
    p_column: torch.Tensor,
    out: torch.Tensor,
    far: torch.Tensor | None = None,
) -> torch.Tensor:
    """One column of the backward pass: G_c into ``out`` and column c of dP.

    Args:
        h: The state h_c (..., D).
        incoming: Gradient reaching h_c outside the mix terms, or None.
        later: (rows, ..., D): G_{k+1} for the rows k >= c that read h_c (a view of
            the buffer of all G's; in groups, the rows of c's own group).
        p_column: (rows,) the weights P[k, c] of those rows (any stride).
        out: Where G_c goes, shaped like h.
        far: fp32 (h.numel(),) share of the other rows (the rows beyond c's group), or None.

    Returns:
        (rows,) fp32: dP[k, c] = <h_c, G_{k+1}> for those rows.
    """
    n = h.numel()
    rows = later.shape[0]
    block = _block(h.device)
    programs = triton.cdiv(n, block)
    partial = torch.empty(programs, max(rows, 1), dtype=torch.float32, device=h.device)
    _mix_column_kernel[(programs,)](
        h, incoming if incoming is not None else h, later, later.stride(0) if rows else 0,
        p_column, p_column.stride(0) if rows else 0, out, partial,
        far if far is not None else partial, n, rows, HAS_INCOMING=incoming is not None,
        BLOCK=block, HAS_FAR=far is not None,
    )  # fmt: skip
    return partial[:, :rows].sum(dim=0)


class MixTape:
    """What the mix nodes of one forward pass share for the column-scheme backward.

    Attributes:
        weights: The (L, L+1) connection matrix the pass used.
        grads: (L, ..., D) buffer: row k holds G_{k+1}, the full gradient of h_{k+1}.
        d_weights: (L, L+1) fp32 gradient of the matrix, filled column by column.
    """

    def __init__(self, weights: torch.Tensor) -> None:
        self.weights = weights
        self.grads: torch.Tensor | None = None
        self.d_weights: torch.Tensor | None = None
        # The rows of `grads` handed to autograd stay referenced here, so autograd
        # never takes one over to accumulate into in place: later columns read them.
        self.handed_out: list[torch.Tensor] = []

    def column(
        self, c: int, h: torch.Tensor, incoming: torch.Tensor | None, out: torch.Tensor
    ) -> None:
        """Computes G_c into ``out`` and column c of dP from rows c .. L-1."""
        num_layers = self.weights.shape[0]
        assert self.grads is not None and self.d_weights is not None
        later = self.grads[c:num_layers]  # (L - c, ..., D): G_{c+1} .. G_L
        p_column = self.weights[c:num_layers, c].float()  # (L - c,)
        self.d_weights[c:num_layers, c] = mix_column(h, incoming, later, p_column, out)


class FusedMix(torch.autograd.Function):
    """Block j's mix as one autograd node, with the column-scheme backward."""

    @staticmethod
    def forward(ctx, y, weights, tape, j, *states):  # noqa: D102
        out = mix_forward(y, states, weights[j, : j + 1].float())
        ctx.tape, ctx.j = tape, j
        ctx.save_for_backward(out, states[0] if j == 0 else out)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        tape, j = ctx.tape, ctx.j
        h_next, h0 = ctx.saved_tensors
        num_layers = tape.weights.shape[0]
        if tape.grads is None:  # the last block's node runs first
            tape.grads = grad_out.new_empty((num_layers, *grad_out.shape))
            tape.d_weights = torch.zeros_like(tape.weights, dtype=torch.float32)
        grad_y = tape.grads[j]  # G_{j+1}, the gradient of y_j too
        tape.column(j + 1, h_next, grad_out.contiguous(), grad_y)
        tape.handed_out.append(grad_y)
        state_grads: list[torch.Tensor | None] = [None] * (j + 1)
        grad_weights = None
        if j == 0:
            state_grads[0] = torch.empty_like(h0)
            tape.column(0, h0, None, state_grads[0])
            grad_weights = tape.d_weights.to(tape.weights.dtype)
        return grad_y, grad_weights, None, None, *state_grads


def start_pass(weights: torch.Tensor):
    """A mixer for one forward pass over a stack wired by ``weights`` (L, L+1)."""
    tape = MixTape(weights)

    def mixer(j: int, y: torch.Tensor, states: Sequence[torch.Tensor]) -> torch.Tensor:
        return FusedMix.apply(y.contiguous(), weights, tape, j, *states)

    return mixer
