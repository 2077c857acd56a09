"""The forward passes of ``ancre ablate``: many edited wirings, the unchanged part run once.

Every static wiring is a reads matrix R (``ancre.model.topology.forms.stream_reads``):
block i reads ``h_i = sum_k R[i, k] x_k`` over the embeddings x_0 and the block
outputs ``x_{k+1} = block_k(h_k)``, and the final norm reads ``h_L``. An edit that
first changes row r of R leaves x_0 .. x_r as they were. So, per chunk of validation
sequences, the intact model's outputs are computed once; the edits that start at row r
are then run together from block r on, stacked along the batch (``stack`` at a time,
the shared outputs broadcast, not copied), so each later block runs once for all of
them. The intact loss goes through the same code, so the deltas compare like with
like; it equals the model's own forward up to the order of fp32 sums.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

import torch

from ancre.data.loader import IGNORE_INDEX
from ancre.model import Transformer
from ancre.model.documents import within_documents
from ancre.model.losses import cross_entropy
from ancre.model.value_residual import FirstValues


def first_changed_row(reads: torch.Tensor, intact: torch.Tensor) -> int:
    """The first row where ``reads`` differs from ``intact`` (L+1 when none does)."""
    differs = (reads != intact).any(dim=1).nonzero()
    return int(differs[0]) if differs.numel() else reads.shape[0]


def _read(reads: torch.Tensor, outputs: Sequence[torch.Tensor], i: int) -> torch.Tensor:
    """h_i = sum_k R[v, i, k] x_k for every stacked edit v.

    Args:
        reads: (V, L+1, L+1) the edits' reads matrices.
        outputs: x_0 .. x_i, each (1 or V, b, T, D).
        i: The row.

    Returns:
        (V, b, T, D), in the outputs' dtype (accumulated in fp32 or wider).
    """
    wide = torch.promote_types(outputs[0].dtype, torch.float32)
    weights = reads[:, i, : i + 1].to(wide)  # (V, i+1)
    h = weights[:, 0].view(-1, 1, 1, 1) * outputs[0].to(wide)
    for k in range(1, i + 1):
        h = h + weights[:, k].view(-1, 1, 1, 1) * outputs[k].to(wide)
    return h.to(outputs[0].dtype)


@torch.no_grad()
def edited_losses(
    model: Transformer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    edits: Mapping[Hashable, torch.Tensor],
    batch: int = 8,
    stack: int = 4,
) -> dict[Hashable, float]:
    """The mean validation loss of the model under each edited reads matrix.

    Args:
        model: A static-wiring model in eval mode (its blocks are run one by one).
        inputs: Validation inputs (N, T).
        targets: Validation targets (N, T).
        edits: Name -> reads matrix (L+1, L+1); the intact one among them if wanted.
        batch: Validation sequences per chunk.
        stack: Edits run together from their first changed block (1 with document
            masking, whose block arguments are per sequence).

    Returns:
        Name -> mean cross-entropy per counted target token.
    """
    names = list(edits)
    reads = torch.stack([edits[name].float() for name in names])  # (E, L+1, L+1)
    intact = reads[0]
    by_row: dict[int, list[int]] = defaultdict(list)
    for e in range(len(names)):
        by_row[first_changed_row(reads[e], intact)].append(e)
    stack = 1 if model.documents is not None else max(1, stack)
    totals = torch.zeros(len(names), dtype=torch.float64)
    count = 0
    for start in range(0, inputs.shape[0], batch):
        x, y = inputs[start : start + batch], targets[start : start + batch]  # (b, T)
        if model.documents is not None:
            y = within_documents(x, y, model.documents)
        count += int((y != IGNORE_INDEX).sum())
        h0, block_args = model.stream_inputs(x)
        values = model.first_values()  # the first block's values, with value residual
        shared = _outputs(model, intact, [h0.unsqueeze(0)], 0, block_args, values)  # x_0 .. x_L
        for row, members in sorted(by_row.items()):
            for first in range(0, len(members), stack):
                group = members[first : first + stack]
                # x_0 .. x_row are the intact run's; the edits differ from h_row on
                final = _final(model, reads[group], shared[: row + 1], row, block_args, values)
                for v, e in enumerate(group):
                    logits = model.head(model.norm(final[v]))  # (b, T, V)
                    totals[e] += float(cross_entropy(logits, y, "sum"))
    return {name: float(totals[e]) / count for e, name in enumerate(names)}


def _outputs(
    model: Transformer,
    reads: torch.Tensor,
    outputs: list[torch.Tensor],
    row: int,
    args: tuple,
    first: FirstValues | None,
) -> list[torch.Tensor]:
    """x_0 .. x_L of one wiring (reads (L+1, L+1)), from the given x_0 .. x_row."""
    for i in range(row, model.shape.num_layers):
        h = _read(reads.unsqueeze(0), outputs, i)[0]  # (b, T, D)
        y = model.blocks[i](h, *args, first_values=first)  # (b, T, D)
        outputs.append(y.unsqueeze(0))  # x_{i+1} (1, b, T, D)
    return outputs


def _final(
    model: Transformer,
    reads: torch.Tensor,
    shared: list[torch.Tensor],
    row: int,
    args: tuple,
    first: FirstValues | None,
) -> torch.Tensor:
    """h_L of V stacked wirings (reads (V, L+1, L+1)) that share x_0 .. x_row: (V, b, T, D).

    ``first`` holds the intact pass's first-block values (value residual), which the
    stacked edits share unless they run the first block again (row 0).
    """
    edits = reads.shape[0]
    outputs = list(shared)  # (1, b, T, D) each: broadcast over the edits
    if first is not None and row > 0:  # (b, G, T, K) -> (V b, G, T, K), as the batch stacks
        first = FirstValues(first.values.repeat(edits, 1, 1, 1))
    elif first is not None:
        first = FirstValues()
    for i in range(row, model.shape.num_layers):
        h = _read(reads, outputs, i)  # (V, b, T, D)
        stacked = model.blocks[i](h.flatten(0, 1), *args, first_values=first)  # (V b, T, D)
        outputs.append(stacked.view(edits, *h.shape[1:]))  # x_{i+1}
    return _read(reads, outputs, model.shape.num_layers)
