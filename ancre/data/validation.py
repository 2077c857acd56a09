"""The fixed validation set: held-out tokens, the same whatever the number of processes.

One source gives the first ``eval.tokens`` target tokens of its validation split,
packed as the training windows are. A mixture (``data.sources``) gives as many of each
source's, one after the other; :attr:`ValidationSet.parts` says which rows are whose,
so that the trainer reports a loss per source (``val_loss/<name>``) and their mean
weighted by the mixture's weights as ``val_loss``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ancre.config import DataConfig
from ancre.data.loader import to_batch
from ancre.data.packing import Packer
from ancre.data.shards import DataError
from ancre.data.sources import split_texts
from ancre.data.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationPart:
    """The rows of one mixture source in a validation set.

    Attributes:
        name: The source's name.
        weight: Its weight in the mixture, normalised to sum 1.
        rows: Its rows of the set's inputs and targets.
    """

    name: str
    weight: float
    rows: slice


@dataclass(frozen=True)
class ValidationSet:
    """Validation inputs and targets; unpacks as ``inputs, targets``.

    Attributes:
        inputs: (N, T) int64.
        targets: (N, T) int64; IGNORE_INDEX where nothing is predicted (padding).
        parts: A mixture's sources and their rows; empty for one source.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    parts: tuple[ValidationPart, ...] = ()

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield self.inputs
        yield self.targets


def validation_set(config: DataConfig, tokenizer: Tokenizer, num_tokens: int) -> ValidationSet:
    """The fixed validation set: the first ``num_tokens`` target tokens of each source.

    Args:
        config: The ``data`` section (source or sources, packing, seq_len).
        tokenizer: The run's tokenizer.
        num_tokens: Target tokens wanted of each source; rounded up to whole sequences.

    Returns:
        The set; padding (``packing: none``) is IGNORE_INDEX in its targets.

    Raises:
        DataError: A source's validation split holds not even one sequence.
    """
    if not config.is_mixture:
        return ValidationSet(*_one_source(config, tokenizer, num_tokens, "data"))
    inputs, targets, parts, start = [], [], [], 0
    for part in config.parts():
        x, y = _one_source(part.config, tokenizer, num_tokens, part.key)
        inputs.append(x)
        targets.append(y)
        parts.append(ValidationPart(part.name, part.weight, slice(start, start + x.shape[0])))
        start += x.shape[0]
    return ValidationSet(torch.cat(inputs), torch.cat(targets), tuple(parts))


def _one_source(
    config: DataConfig, tokenizer: Tokenizer, num_tokens: int, key: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """One source's validation inputs (n, T) and targets (n, T); ``key`` is its section."""
    wanted = math.ceil(num_tokens / config.seq_len)
    packer = Packer(tokenizer.eos_id, config.seq_len + 1, config.packing)
    rows: list[tuple[list[int], int]] = []
    skipped: Counter[str] = Counter()
    for text in split_texts(config, "validation", skipped):
        try:
            ids = tokenizer.encode_one(text)
        except Exception:  # a document the tokenizer rejects
            skipped["tokenizer_error"] += 1
            continue
        packer.add(ids)
        while len(rows) < wanted and (item := packer.pop()) is not None:
            rows.append(item)
        if len(rows) == wanted:
            break
    where = (
        f"{key}.path={config.path!r}"
        if config.source == "local"
        else f"{key}.hub_name={config.hub_name!r}"
    )
    if skipped:
        logger.warning(
            "validation data of %s: skipped %s",
            where, ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())),
        )  # fmt: skip
    if not rows:
        raise DataError(
            f"{where}: the validation split holds fewer than {config.seq_len + 1} tokens (one "
            f"sequence of data.seq_len={config.seq_len}); add validation data or lower "
            "data.seq_len"
        )
    if len(rows) < wanted:
        logger.warning(
            "validation data of %s holds %d sequences, fewer than the %d of eval.tokens=%d; "
            "evaluating on all of it",
            where, len(rows), wanted, num_tokens,
        )  # fmt: skip
    return to_batch(rows)
