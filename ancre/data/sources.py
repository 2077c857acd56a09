"""Where documents come from: C4-format shards on disk, or the Hugging Face hub.

``ancre.data.shards`` reads local shards (one reader's share of every epoch, exact
positions, bad lines skipped and counted) and ``ancre.data.hub`` streams a hub
dataset; this module picks between them from the config, checks the data before a
run touches the disk, and reads whole splits for tokenizer training and validation.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ancre.config import DataConfig
from ancre.data.hub import StreamingDocuments, open_hub
from ancre.data.mixture import furthest_below
from ancre.data.shards import (
    FILE_REASONS,
    LINE_REASONS,
    DataError,
    LocalShards,
    MissingDataError,
    SkipReport,
    document_text,
    find_shards,
    iter_documents,
    read_lines,
    shard_list,
)

__all__ = [
    "SKIP_REASONS",
    "DataError",
    "DocumentSource",
    "MissingDataError",
    "check_data",
    "find_shards",
    "interleave",
    "iter_documents",
    "split_texts",
    "training_source",
]

SKIP_REASONS = (*LINE_REASONS, "tokenizer_error", *FILE_REASONS)
"""Why input can be skipped; the keys of the skip counters and of ``data_skipped``."""
FIELD_PROBE_LINES = 200
"""Lines of the first shard of each split read to check ``data.text_field``."""


class DocumentSource(Protocol):
    """Documents of one reader, each with the position just after it."""

    def documents(
        self, position: dict[str, Any] | None, skipped: Counter[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yields (text, position after it) forever, from ``position`` (None: the start)."""
        ...


def check_data(config: DataConfig) -> None:
    """Fails fast, before any training work, when the configured data cannot be read.

    A mixture checks each of its sources; the error names the source.

    Raises:
        MissingDataError: No shards of a split (local), or the hub is unreachable.
        DataError: No line at the start of a split's first shard has the text field.
    """
    for part in config.parts():
        try:
            _check_one(part.config, part.key)
        except (MissingDataError, DataError) as error:
            if not config.is_mixture:
                raise
            raise type(error)(f"{part.key} ({part.name!r}): {error}") from None


def _check_one(config: DataConfig, key: str) -> None:
    """The checks of :func:`check_data` on one source; messages name ``key``'s fields."""
    if config.source == "hub":
        open_hub(config.hub_name, config.hub_subset, "train")
        return
    for split in ("train", "validation"):
        shard = find_shards(config.path, split, f"{key}.path")[0]
        _check_text_field(shard, config.text_field, f"{key}.text_field")


def _check_text_field(shard: Path, text_field: str, key: str) -> None:
    """Refuses a shard whose first records are JSON objects without ``text_field``."""
    fields: Counter[str] = Counter()
    records = 0
    for _, raw in zip(range(FIELD_PROBE_LINES), iter_raw_lines(shard), strict=False):
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if not isinstance(record, dict):
            continue
        records += 1
        if document_text(record, text_field)[0] is not None or text_field in record:
            return
        fields.update(k for k in record if isinstance(record[k], str))
    if records:
        found = ", ".join(k for k, _ in fields.most_common(8)) or "none"
        raise DataError(
            f"{key}={text_field!r}: none of the first {records} records of {shard} "
            f"has it; their text fields: {found}. Set data.text_field to the key that holds "
            "the document text"
        )


def iter_raw_lines(shard: Path) -> Iterator[bytes]:
    """The raw non-blank lines of a shard (nothing counted; for probes)."""
    for _, raw in read_lines(shard, 0, SkipReport(shard, Counter(), count_files=False)):
        yield raw


def split_texts(config: DataConfig, split: str, skipped: Counter[str]) -> Iterator[str]:
    """Every document of a split in its stored order (for tokenizer training and validation).

    A mixture's sources are interleaved document by document so that each one's share
    of the characters read so far stays at its weight, until all are read.

    Args:
        config: The ``data`` section.
        split: ``train`` or ``validation``.
        skipped: Counts of skipped input by reason, updated in place.

    Yields:
        Document texts.
    """
    if config.is_mixture:
        parts = [(p.weight, _one_split(p.config, split, skipped)) for p in config.parts()]
        yield from interleave(parts)
    else:
        yield from _one_split(config, split, skipped)


def interleave(parts: list[tuple[float, Iterator[str]]]) -> Iterator[str]:
    """Texts of several streams, each taken next while its share of characters is short.

    Args:
        parts: (weight, texts) per stream; weights sum to 1.

    Yields:
        Texts of every stream, until each is exhausted.
    """
    weights = {k: weight for k, (weight, _) in enumerate(parts)}
    taken = dict.fromkeys(weights, 0)
    live = list(weights)
    while live:
        k = furthest_below(weights, taken, live)
        text = next(parts[k][1], None)
        if text is None:
            live.remove(k)
            continue
        taken[k] += len(text)
        yield text


def _one_split(config: DataConfig, split: str, skipped: Counter[str]) -> Iterator[str]:
    """The documents of one source's split (see :func:`split_texts`)."""
    if config.source == "local":
        yield from iter_documents(find_shards(config.path, split), config.text_field, skipped)
        return
    for example in open_hub(config.hub_name, config.hub_subset, split):
        text, skip = document_text(example, config.text_field)
        if skip is not None:
            skipped[skip.reason] += 1
        else:
            yield text


def training_source(
    config: DataConfig,
    reader: int,
    num_readers: int,
    seed: int,
    earlier: dict[str, list[list[Any]]] | None = None,
) -> DocumentSource:
    """The training documents of one reader out of ``num_readers``, from one source.

    Args:
        config: The ``data`` section of one source (a mixture's: one of its ``parts()``).
        reader: This reader's index (rank x workers per rank + worker).
        num_readers: Readers over all ranks and workers.
        seed: The run's seed (shard order of each epoch).
        earlier: Shard lists that saved positions name (local shards).

    Returns:
        A source of (text, position) pairs.
    """
    if config.source == "local":
        shards = shard_list(find_shards(config.path, "train"))
        return LocalShards(
            shards, config.text_field, reader, num_readers, seed, config.shuffle, earlier
        )
    dataset = open_hub(config.hub_name, config.hub_subset, "train")
    return StreamingDocuments(dataset, config.text_field, reader, num_readers)
