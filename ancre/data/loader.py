"""Per-rank batches of packed token sequences, and the fixed validation set.

Training documents are dealt out round-robin: rank r of W reads documents
r, r + W, r + 2W, ... of the shards in name order, so the ranks read disjoint parts and
together every document once per epoch. The validation set is the first
``eval.tokens`` tokens of the validation shards, packed into windows, the same
whatever the number of ranks; each rank evaluates every W-th window and the losses
are summed over ranks per token.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ancre.data.packing import pack_documents
from ancre.data.sources import iter_documents
from ancre.data.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

ENCODE_CHUNK = 64
"""Documents encoded per sentencepiece call."""


def _encoded(tokenizer: Tokenizer, texts: Iterator[str]) -> Iterator[list[int]]:
    while chunk := list(itertools.islice(texts, ENCODE_CHUNK)):
        yield from tokenizer.encode(chunk)


class TrainBatches:
    """An endless stream of (inputs, targets) micro-batches for one rank.

    Attributes:
        skipped: Counts of skipped input lines by reason, over all epochs so far.
        epoch: How many times the shards have been read through completely.
    """

    def __init__(
        self,
        shards: Sequence[Path],
        tokenizer: Tokenizer,
        text_field: str,
        seq_len: int,
        micro_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        self.shards = list(shards)
        self.tokenizer = tokenizer
        self.text_field = text_field
        self.seq_len = seq_len
        self.micro_batch_size = micro_batch_size
        self.rank = rank
        self.world_size = world_size
        self.skipped: Counter[str] = Counter()
        self.epoch = 0
        self._windows = self._endless_windows()

    def _rank_documents(self) -> Iterator[str]:
        documents = iter_documents(self.shards, self.text_field, self.skipped)
        return itertools.islice(documents, self.rank, None, self.world_size)

    def _endless_windows(self) -> Iterator[list[int]]:
        while True:
            produced = False
            texts = self._rank_documents()
            windows = pack_documents(
                _encoded(self.tokenizer, texts), self.tokenizer.eos_id, self.seq_len + 1
            )
            for window in windows:
                produced = True
                yield window
            if not produced:
                raise ValueError(
                    f"rank {self.rank} got no complete sequence of {self.seq_len + 1} tokens "
                    f"from {len(self.shards)} training shard(s); use more data or a smaller "
                    "data.seq_len"
                )
            self.epoch += 1

    def __iter__(self) -> TrainBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next micro-batch: inputs (B, T) and targets (B, T), int64."""
        rows = [next(self._windows) for _ in range(self.micro_batch_size)]
        batch = torch.tensor(rows, dtype=torch.long)  # (B, T+1)
        return batch[:, :-1], batch[:, 1:]


def validation_windows(
    shards: Sequence[Path], tokenizer: Tokenizer, text_field: str, seq_len: int, num_tokens: int
) -> torch.Tensor:
    """The fixed validation set: the first ``num_tokens`` target tokens, packed.

    Args:
        shards: Validation shards, in name order.
        tokenizer: The run's tokenizer.
        text_field: JSON key holding the text.
        seq_len: Tokens per sequence.
        num_tokens: Target tokens wanted; rounded up to whole windows.

    Returns:
        Windows (N, seq_len + 1), int64; N * seq_len target tokens.

    Raises:
        ValueError: The validation shards hold not even one window.
    """
    wanted = math.ceil(num_tokens / seq_len)
    skipped: Counter[str] = Counter()
    texts = iter_documents(shards, text_field, skipped)
    windows = list(
        itertools.islice(
            pack_documents(_encoded(tokenizer, texts), tokenizer.eos_id, seq_len + 1), wanted
        )
    )
    if not windows:
        raise ValueError(
            f"the validation shards ({', '.join(map(str, shards))}) hold fewer than "
            f"{seq_len + 1} tokens; add validation data or lower data.seq_len"
        )
    if len(windows) < wanted:
        logger.warning(
            "validation data holds %d tokens, fewer than eval.tokens=%d; evaluating on all of it",
            len(windows) * seq_len,
            num_tokens,
        )
    return torch.tensor(windows, dtype=torch.long)
