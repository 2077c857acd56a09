"""Documents inside packed windows (``data.packing: docs_masked``): their layout.

A packed window holds the end of one document, whole documents and the start of the
next, each ended by EOS. With documents masked, a position belongs to the document
whose tokens it reads: a new document starts after every EOS, so EOS closes the
document it ends. Then:

- attention stays within each document (``ancre.kernels.attention.DocumentMask``);
- the rotary positions restart at 0 at every document's first token (unless
  ``data.restart_positions`` is false);
- the target of an EOS input, the first token of the next document, is left out of the
  loss: no position predicts across a document boundary.

Each document is then trained on as if it were alone in its window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ancre.kernels.attention import DocumentMask
from ancre.model.losses import IGNORED


@dataclass(frozen=True)
class DocumentMasking:
    """How a model reads packed windows as separate documents.

    Attributes:
        eos_id: The token that ends every document.
        restart_positions: Rotary positions restart at every document.
    """

    eos_id: int
    restart_positions: bool = True


def document_layout(
    tokens: torch.Tensor, masking: DocumentMasking
) -> tuple[DocumentMask, torch.Tensor | None]:
    """The documents of packed windows, and each position's place in its document.

    Args:
        tokens: (B, T) input token ids.
        masking: The EOS id and whether positions restart.

    Returns:
        The documents (for attention) and the (B, T) rotary positions, or None to keep
        the window's own 0 .. T-1.
    """
    ends = tokens == masking.eos_id  # (B, T)
    starts = torch.zeros_like(ends)
    starts[:, 1:] = ends[:, :-1]  # a document starts after every EOS
    segments = starts.long().cumsum(dim=1)  # (B, T)
    if not masking.restart_positions:
        return DocumentMask(segments), None
    index = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)  # (B, T)
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values  # (B, T)
    return DocumentMask(segments), index - first


def within_documents(
    tokens: torch.Tensor, targets: torch.Tensor, masking: DocumentMasking
) -> torch.Tensor:
    """The targets with every prediction across a document boundary left out (B, T)."""
    return targets.masked_fill(tokens == masking.eos_id, IGNORED)
