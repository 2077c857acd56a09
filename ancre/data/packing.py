"""Packing token streams into fixed windows of ``seq_len + 1`` tokens.

Two modes:

- ``docs`` (default): documents joined with EOS and cut into consecutive windows;
  no padding, every position counts in the loss. ``docs_masked`` makes the same
  windows; the model then keeps each document apart (``ancre.model.documents``).
- ``none``: one window per document (its tokens and EOS), truncated to the window or
  padded with EOS; the padded positions are masked out of the loss. This is the
  protocol of the Ancre paper's reference code.

A window of ``seq_len + 1`` tokens gives ``seq_len`` inputs and ``seq_len`` targets;
``valid`` says how many of its leading tokens are real.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

PACKING_MODES = ("docs", "docs_masked", "none")
"""``docs_masked`` makes the windows of ``docs``; the model reads their documents apart."""


class Packer:
    """Turns documents into windows, holding the tokens not yet emitted.

    The tokens added but not yet emitted (:attr:`pending`) are all the state a packer
    has: a packer given them back continues exactly where the old one stopped.
    """

    def __init__(self, eos_id: int, window: int, mode: str = "docs") -> None:
        if window < 2:
            raise ValueError(f"a window needs at least 2 tokens, got {window}")
        if mode not in PACKING_MODES:
            raise ValueError(f"packing mode {mode!r}; allowed: {', '.join(PACKING_MODES)}")
        self.eos_id = eos_id
        self.window = window
        self.mode = mode
        self._buffer: list[int] = []
        self._start = 0  # tokens of _buffer already emitted

    @property
    def pending(self) -> list[int]:
        """The tokens added and not yet emitted."""
        return self._buffer[self._start :]

    @pending.setter
    def pending(self, tokens: list[int]) -> None:
        self._buffer, self._start = list(tokens), 0

    def add(self, ids: list[int]) -> None:
        """Adds one document's token ids (EOS is appended here)."""
        if self.mode == "none":  # (docs_masked packs as docs)
            if self.pending:
                raise RuntimeError("packing none holds one document at a time: pop() it first")
            self.pending = (ids + [self.eos_id])[: self.window]
            return
        del self._buffer[: self._start]
        self._start = 0
        self._buffer.extend(ids)
        self._buffer.append(self.eos_id)

    def pop(self) -> tuple[list[int], int] | None:
        """The next full window and its count of real tokens, or None if more input is needed."""
        if self.mode == "none":
            valid = len(self.pending)
            if not valid:
                return None
            window = self.pending + [self.eos_id] * (self.window - valid)
            self.pending = []
            return window, valid
        if len(self._buffer) - self._start < self.window:
            return None
        window = self._buffer[self._start : self._start + self.window]
        self._start += self.window
        return window, self.window


def pack_documents(documents: Iterable[list[int]], eos_id: int, window: int) -> Iterator[list[int]]:
    """Concatenates token lists, each followed by EOS, and yields consecutive windows.

    Tokens left over at the end, fewer than a window, are not yielded.

    Args:
        documents: Token ids of each document.
        eos_id: The end-of-document id placed after every document.
        window: Tokens per yielded window.

    Yields:
        Lists of exactly ``window`` token ids.
    """
    packer = Packer(eos_id, window)
    for ids in documents:
        packer.add(ids)
        while (item := packer.pop()) is not None:
            yield item[0]
