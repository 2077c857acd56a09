"""Documents: C4-format shards on disk, or allenai/c4 streamed from the Hugging Face hub.

Shards on disk are gzipped (or plain) JSON lines, found by split name as allenai/c4
names them (``c4-train.00000-of-01024.json.gz``, ``c4-validation.00000-of-00008.json.gz``).

A training source serves one *reader* (a rank, or a DataLoader worker of a rank) out
of R: reader r takes the lines r, r + R, r + 2R, ... of each epoch (counted over the
epoch's shards in order), so the readers' documents are disjoint and together cover
every document exactly once per epoch. Lines of other readers are skipped before they
are parsed. Every document comes with the position just after it, and a source
restarted from a position continues with exactly the next document, without
re-reading what came before (a gzip file is decompressed up to the line, not parsed).

Bad input never stops a run and never passes silently: a malformed line, a line
without the text field, invalid UTF-8, an empty document or a truncated gzip member
is skipped, counted by reason, and reported with its file and line.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import random
import re
import threading
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import datasets
from datasets.distributed import split_dataset_by_node

from ancre.config import DataConfig

logger = logging.getLogger(__name__)

SHARD_SUFFIXES = (".json.gz", ".jsonl.gz", ".jsonl", ".json")
SKIP_REASONS = ("malformed_json", "missing_field", "invalid_utf8", "empty", "truncated_file")
"""Why an input line can be skipped; the keys of the skip counters."""
MAX_WARNINGS_PER_FILE = 5
HUB_TIMEOUT_S = 60.0
"""Longest wait for the hub's first document before a run gives up."""


class MissingDataError(FileNotFoundError):
    """No shard matches what the config asks for, or the hub cannot be reached."""


def find_shards(path: str, split: str) -> list[Path]:
    """Lists the shards of one split under a folder, or matching a glob, in name order.

    Args:
        path: A folder (searched recursively), a glob pattern (``data/c4/*.json.gz``) or
            one file.
        split: ``train`` or ``validation``; a shard belongs to a split when the split's
            name stands as a word in its file name.

    Returns:
        The shard paths, sorted by name.

    Raises:
        MissingDataError: Nothing matches; the message says what was searched.
    """
    if any(ch in path for ch in "*?["):
        candidates = [Path(p) for p in glob.glob(path, recursive=True)]
        searched = f"files matching the glob {path!r}"
    elif Path(path).is_dir():
        candidates = list(Path(path).rglob("*"))
        searched = f"the folder {path!r}"
    elif Path(path).is_file():
        candidates = [Path(path)]
        searched = f"the file {path!r}"
    else:
        raise MissingDataError(
            f"data.path={path!r} does not exist; point it at a folder of C4-format shards "
            "(e.g. data/sample) or a glob such as 'data/c4/en/*.json.gz'"
        )
    word = re.compile(rf"(^|[^a-z]){re.escape(split)}([^a-z]|$)")
    shards = sorted(
        (p for p in candidates if p.is_file() and p.name.endswith(SHARD_SUFFIXES)),
        key=lambda p: p.name,
    )
    shards = [p for p in shards if word.search(p.name)]
    if not shards:
        raise MissingDataError(
            f"no {split} shards in {searched}: looked for file names containing "
            f"'{split}' and ending in {', '.join(SHARD_SUFFIXES)} "
            f"(like c4-{split}.00000-of-01024.json.gz)"
        )
    return shards


class _SkipReport:
    """Counts skipped lines of one file and warns about the first few."""

    def __init__(self, shard: Path, skipped: Counter[str]) -> None:
        self.shard = shard
        self.skipped = skipped
        self.count = 0

    def __call__(self, reason: str, line_no: int, detail: str) -> None:
        self.skipped[reason] += 1
        self.count += 1
        if self.count <= MAX_WARNINGS_PER_FILE:
            logger.warning("skipped %s:%d (%s): %s", self.shard, line_no, reason, detail)

    def close(self) -> None:
        if self.count > MAX_WARNINGS_PER_FILE:
            logger.warning("%s: %d lines skipped in all", self.shard, self.count)


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _parse(raw: bytes, text_field: str) -> tuple[str | None, str]:
    """The document text of one raw line, or None and the reason it is skipped."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"invalid_utf8: {error}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return None, f"malformed_json: {error}"
    text = record.get(text_field) if isinstance(record, dict) else None
    if not isinstance(text, str):
        return None, f"missing_field: no string field {text_field!r}"
    if not text.strip():
        return None, "empty: empty document"
    return text, ""


def _lines(shard: Path, start: int, report: _SkipReport) -> Iterator[tuple[int, bytes]]:
    """Yields (line number, raw line) of the non-blank lines after the first ``start``."""
    line_no = 0
    try:
        with _open(shard) as handle:
            for line_no, raw in enumerate(handle, start=1):
                if line_no > start and raw.strip():
                    yield line_no, raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        report("truncated_file", line_no + 1, f"stopped reading this file: {error}")


def iter_documents(shards: Sequence[Path], text_field: str, skipped: Counter[str]) -> Iterator[str]:
    """Yields the text of every good document of the shards, in order.

    Args:
        shards: Shard files, read one after another.
        text_field: JSON key holding the text.
        skipped: Counts of skipped input by reason (SKIP_REASONS); updated in place as
            lines are read.

    Yields:
        Document texts.
    """
    for shard in shards:
        report = _SkipReport(shard, skipped)
        for line_no, raw in _lines(shard, 0, report):
            text, why = _parse(raw, text_field)
            if text is None:
                reason, _, detail = why.partition(": ")
                report(reason, line_no, detail)
            else:
                yield text
        report.close()


class DocumentSource(Protocol):
    """Documents of one reader, each with the position just after it."""

    def documents(
        self, position: dict[str, Any] | None, skipped: Counter[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yields (text, position after it) forever, from ``position`` (None: the start)."""
        ...


@dataclass(frozen=True)
class ShardPosition:
    """Where a reader of local shards stands.

    Attributes:
        epoch: Completed passes over the shards.
        file: Index of the current shard in this epoch's order.
        line: Lines of that shard already read.
        seen: Lines read this epoch over all shards (it decides which reader owns a line).
    """

    epoch: int = 0
    file: int = 0
    line: int = 0
    seen: int = 0


class LocalShards:
    """The training documents of one reader out of ``num_readers``, from shards on disk.

    Each epoch reads the shards in an order shuffled from ``seed`` and the epoch (or in
    name order when ``shuffle`` is off).
    """

    def __init__(
        self,
        shards: Sequence[Path],
        text_field: str,
        reader: int = 0,
        num_readers: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= reader < num_readers:
            raise ValueError(f"reader {reader} is outside {num_readers} readers")
        self.shards = list(shards)
        self.text_field = text_field
        self.reader = reader
        self.num_readers = num_readers
        self.seed = seed
        self.shuffle = shuffle

    def order(self, epoch: int) -> list[Path]:
        """The shards in the order epoch ``epoch`` reads them."""
        order = list(self.shards)
        if self.shuffle:
            random.Random(f"{self.seed}/{epoch}").shuffle(order)
        return order

    def documents(
        self, position: dict[str, Any] | None, skipped: Counter[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yields this reader's documents with their positions, epoch after epoch.

        Raises:
            ValueError: A whole epoch gave this reader no document.
        """
        pos = ShardPosition(**position) if position else ShardPosition()
        epoch, first_file, first_line, seen = pos.epoch, pos.file, pos.line, pos.seen
        while True:
            found = False
            for index, shard in enumerate(self.order(epoch)):
                if index < first_file:
                    continue
                report = _SkipReport(shard, skipped)
                line = first_line if index == first_file else 0
                for line_no, raw in _lines(shard, line, report):
                    seen += 1
                    if (seen - 1) % self.num_readers != self.reader:
                        continue
                    text, why = _parse(raw, self.text_field)
                    if text is None:
                        reason, _, detail = why.partition(": ")
                        report(reason, line_no, detail)
                        continue
                    found = True
                    yield text, asdict(ShardPosition(epoch, index, line_no, seen))
                report.close()
            if not found and first_file == 0 and first_line == 0:
                raise ValueError(
                    f"reader {self.reader} of {self.num_readers} found no document in "
                    f"{len(self.shards)} shard(s); add data or use fewer ranks/workers"
                )
            epoch, first_file, first_line, seen = epoch + 1, 0, 0, 0


def _first_contact(dataset: datasets.IterableDataset, what: str) -> None:
    """Reads one example within HUB_TIMEOUT_S, or fails saying how to use local shards."""
    outcome: dict[str, BaseException] = {}

    def probe() -> None:
        try:
            next(iter(dataset))
        except BaseException as error:  # reported in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S)
    problem = (
        f"no answer within {HUB_TIMEOUT_S:.0f} s" if thread.is_alive() else outcome.get("error")
    )
    if problem is not None:
        raise MissingDataError(
            f"data.source=hub: cannot stream {what} from the Hugging Face hub ({problem}). "
            "Download the C4 shards (c4-train.*.json.gz, c4-validation.*.json.gz) and set "
            "data.source=local data.path=FOLDER"
        )


def open_hub(name: str, subset: str, split: str) -> datasets.IterableDataset:
    """Opens a streaming split of a hub dataset, failing within HUB_TIMEOUT_S if unreachable.

    Args:
        name: Dataset name, e.g. ``allenai/c4``.
        subset: Its configuration, e.g. ``en``.
        split: ``train`` or ``validation``.

    Returns:
        The streaming dataset.

    Raises:
        MissingDataError: The hub cannot be reached; the message says what to do instead.
    """
    what = f"{name} ({subset}, {split})"
    outcome: dict[str, Any] = {}

    def load() -> None:
        try:
            outcome["dataset"] = datasets.load_dataset(name, subset, split=split, streaming=True)
        except BaseException as error:  # reported in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S)
    if "dataset" not in outcome:
        problem = outcome.get("error") or f"no answer within {HUB_TIMEOUT_S:.0f} s"
        raise MissingDataError(
            f"data.source=hub: cannot stream {what} from the Hugging Face hub ({problem}). "
            "Download the C4 shards (c4-train.*.json.gz, c4-validation.*.json.gz) and set "
            "data.source=local data.path=FOLDER"
        )
    _first_contact(outcome["dataset"], what)
    return outcome["dataset"]


class StreamingDocuments:
    """The training documents of one reader out of ``num_readers``, from a streaming dataset.

    Used for ``data.source: hub`` (allenai/c4 streamed by the datasets library), and
    for any streaming ``datasets.IterableDataset``. Readers are split with
    ``datasets.distributed.split_dataset_by_node`` (whole files per reader when the file
    count divides evenly, else every R-th example); positions hold the dataset's own
    ``state_dict``.
    """

    def __init__(
        self,
        dataset: datasets.IterableDataset,
        text_field: str,
        reader: int = 0,
        num_readers: int = 1,
    ) -> None:
        self.text_field = text_field
        self._dataset = split_dataset_by_node(dataset, rank=reader, world_size=num_readers)
        self._start = self._dataset.state_dict()

    def documents(
        self, position: dict[str, Any] | None, skipped: Counter[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yields this reader's documents with the dataset state after each, epoch after epoch."""
        epoch = position["epoch"] if position else 0
        self._dataset.load_state_dict(position["dataset"] if position else self._start)
        while True:
            self._dataset.set_epoch(epoch)
            for example in self._dataset:
                text = example.get(self.text_field)
                if not isinstance(text, str):
                    skipped["missing_field"] += 1
                elif not text.strip():
                    skipped["empty"] += 1
                else:
                    yield text, {"epoch": epoch, "dataset": self._dataset.state_dict()}
            epoch += 1
            self._dataset.load_state_dict(self._start)


def check_data(config: DataConfig) -> None:
    """Fails fast, before any training work, when the configured data cannot be read.

    Raises:
        MissingDataError: No shards of a split (local), or the hub is unreachable.
    """
    if config.source == "local":
        find_shards(config.path, "train")
        find_shards(config.path, "validation")
    else:
        open_hub(config.hub_name, config.hub_subset, "train")


def split_texts(config: DataConfig, split: str, skipped: Counter[str]) -> Iterator[str]:
    """Every document of a split in its stored order (for tokenizer training and validation).

    Args:
        config: The ``data`` section.
        split: ``train`` or ``validation``.
        skipped: Counts of skipped input by reason, updated in place.

    Yields:
        Document texts.
    """
    if config.source == "local":
        yield from iter_documents(find_shards(config.path, split), config.text_field, skipped)
        return
    for example in open_hub(config.hub_name, config.hub_subset, split):
        text = example.get(config.text_field)
        if isinstance(text, str) and text.strip():
            yield text
        else:
            skipped["missing_field" if not isinstance(text, str) else "empty"] += 1


def training_source(config: DataConfig, reader: int, num_readers: int, seed: int) -> DocumentSource:
    """The training documents of one reader out of ``num_readers``.

    Args:
        config: The ``data`` section.
        reader: This reader's index (rank x workers per rank + worker).
        num_readers: Readers over all ranks and workers.
        seed: The run's seed (shard order of each epoch).

    Returns:
        A source of (text, position) pairs.
    """
    if config.source == "local":
        shards = find_shards(config.path, "train")
        return LocalShards(shards, config.text_field, reader, num_readers, seed, config.shuffle)
    dataset = open_hub(config.hub_name, config.hub_subset, "train")
    return StreamingDocuments(dataset, config.text_field, reader, num_readers)
