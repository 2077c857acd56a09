"""Packing: documents joined with EOS and cut into fixed windows, no padding."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def pack_documents(documents: Iterable[list[int]], eos_id: int, window: int) -> Iterator[list[int]]:
    """Concatenates token lists, each followed by EOS, and yields consecutive windows.

    A window of ``seq_len + 1`` tokens gives ``seq_len`` inputs and ``seq_len`` targets
    (the inputs shifted by one). Tokens left over at the end, fewer than a window,
    are not yielded.

    Args:
        documents: Token ids of each document.
        eos_id: The end-of-document id placed after every document.
        window: Tokens per yielded window.

    Yields:
        Lists of exactly ``window`` token ids.
    """
    if window < 2:
        raise ValueError(f"a window needs at least 2 tokens, got {window}")
    buffer: list[int] = []
    start = 0
    for ids in documents:
        buffer.extend(ids)
        buffer.append(eos_id)
        while len(buffer) - start >= window:
            yield buffer[start : start + window]
            start += window
        if start:
            del buffer[:start]
            start = 0
