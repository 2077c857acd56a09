"""C4-format shards on disk: finding them, reading their lines, and one reader's documents.

Shards are gzipped (or plain) JSON lines, found by split name as allenai/c4 names them
(``c4-train.00000-of-01024.json.gz``, ``c4-validation.00000-of-00008.json.gz``).

A reader (a rank, or a DataLoader worker of a rank) out of R takes the lines r, r + R,
r + 2R, ... of each epoch, counted over the epoch's shards in order, so the readers'
documents are disjoint and together cover every document exactly once per epoch.
Lines of other readers are skipped before they are parsed. Every document comes with
the position just after it: the shard by name, the line, and the shard list the epoch
reads. A source restarted from a position continues with exactly the next document,
without parsing what came before, and an epoch that began before shards were added
or removed finishes with the shards it began with. A position moved to another number
of readers (``ancre.data.regroup``) also names the lines its reader took over.

Bad input never stops a run and never passes silently. Any problem with one line
(invalid UTF-8, JSON that does not parse, nests too deep or holds a number too long,
no text field, text that is not valid Unicode, an empty document) skips that line,
counts it by reason and reports its file and line; a shard that cannot be read at
all, or stops early, is counted and named.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import logging
import os
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

from ancre.data.regroup import Claim, claims_ahead, reader_claims

logger = logging.getLogger(__name__)

SHARD_SUFFIXES = (".json.gz", ".jsonl.gz", ".jsonl", ".json")
LINE_REASONS = ("malformed_json", "missing_field", "invalid_utf8", "invalid_text", "empty")
"""Why a line of a shard is skipped."""
FILE_REASONS = ("truncated_file", "unreadable_file")
"""Why (the rest of) a shard is skipped; counted once per epoch, by reader 0."""
MAX_WARNINGS_PER_FILE = 5


class MissingDataError(FileNotFoundError):
    """No shard matches what the config asks for, or the hub cannot be reached."""


class DataError(ValueError):
    """The data cannot be used as configured; the message names the key or file."""


@dataclass(frozen=True)
class Shard:
    """One shard file.

    Attributes:
        key: Its name in data positions: the path relative to the folder that holds
            all shards of the split, so a position survives moving that folder.
        size: Its size in bytes when the list was made.
        path: Where it is now (None: a shard a saved list names that is gone).
    """

    key: str
    size: int
    path: Path | None


def find_shards(path: str, split: str, key: str = "data.path") -> list[Path]:
    """Lists the shards of one split under a folder, or matching a glob, in name order.

    Args:
        path: A folder (searched recursively), a glob pattern (``data/c4/*.json.gz``) or
            one file.
        split: ``train`` or ``validation``; a shard belongs to a split when the split's
            name stands as a word in its file name.
        key: The config key that holds ``path``, for messages.

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
            f"{key}={path!r} does not exist; point it at a folder of C4-format shards "
            "(e.g. data/sample) or a glob such as 'data/c4/en/*.json.gz'"
        )
    word = re.compile(rf"(^|[^a-z]){re.escape(split)}([^a-z]|$)")
    shards = sorted(
        (p for p in candidates if p.is_file() and p.name.endswith(SHARD_SUFFIXES)),
        key=lambda p: (p.name, str(p)),
    )
    shards = [p for p in shards if word.search(p.name)]
    if not shards:
        raise MissingDataError(
            f"{key}: no {split} shards in {searched}: looked for file names containing "
            f"'{split}' and ending in {', '.join(SHARD_SUFFIXES)} "
            f"(like c4-{split}.00000-of-01024.json.gz)"
        )
    return shards


def shard_list(paths: Sequence[Path]) -> list[Shard]:
    """The shards of a split with their keys and sizes, in the given order."""
    if not paths:
        return []
    root = Path(os.path.commonpath([p.parent for p in paths]))
    return [Shard(str(p.relative_to(root)), p.stat().st_size, p) for p in paths]


def list_digest(shards: Sequence[Shard] | Sequence[Sequence[Any]]) -> str:
    """A short fingerprint of a shard list (keys and sizes, in order)."""
    pairs = [(s.key, s.size) if isinstance(s, Shard) else (s[0], s[1]) for s in shards]
    text = "\n".join(f"{key}\t{size}" for key, size in pairs)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def epoch_order(shards: Sequence[Shard], seed: int, epoch: int, shuffle: bool) -> list[Shard]:
    """The shards in the order epoch ``epoch`` reads them (seeded, new every epoch)."""
    order = list(shards)
    if shuffle:
        random.Random(f"{seed}/{epoch}").shuffle(order)
    return order


class SkipReport:
    """Counts what one file made a reader skip, and warns about the first few lines."""

    def __init__(self, shard: Path | str, skipped: Counter[str], count_files: bool = True) -> None:
        self.shard = shard
        self.skipped = skipped
        self.count_files = count_files
        self.count = 0

    def __call__(self, reason: str, line_no: int, detail: str) -> None:
        """Counts one skipped line (or file, for FILE_REASONS) and warns about it."""
        if reason in FILE_REASONS:
            if self.count_files:
                self.skipped[reason] += 1
                logger.warning(
                    "skipped %s from line %d (%s): %s", self.shard, line_no, reason, detail
                )
            return
        self.skipped[reason] += 1
        self.count += 1
        if self.count <= MAX_WARNINGS_PER_FILE:
            logger.warning("skipped %s:%d (%s): %s", self.shard, line_no, reason, detail)

    def close(self) -> None:
        """Says how many lines of the file were skipped, when more than were shown."""
        if self.count > MAX_WARNINGS_PER_FILE:
            logger.warning("%s: %d lines skipped in all", self.shard, self.count)


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


class Skip(NamedTuple):
    """Why one input line or example was skipped.

    Attributes:
        reason: One of SKIP_REASONS (the key it is counted under).
        detail: What was wrong, for the warning.
    """

    reason: str
    detail: str


Parsed = tuple[str, None] | tuple[None, Skip]
"""The document text and no skip, or no text and why it was skipped."""


def parse_line(raw: bytes, text_field: str) -> Parsed:
    """The document text of one raw line, or None and why it was skipped.

    No line, however malformed, raises.
    """
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, Skip("invalid_utf8", str(error))
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as error:  # bad JSON, a 5,000-digit number
        return None, Skip("malformed_json", f"{type(error).__name__}: {str(error)[:120]}")
    return document_text(record, text_field)


def document_text(record: Any, text_field: str) -> Parsed:
    """The text of one parsed record, or None and why it was skipped."""
    text = record.get(text_field) if isinstance(record, dict) else None
    if not isinstance(text, str):
        return None, Skip("missing_field", f"no string field {text_field!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate escape such as "\ud800"
        return None, Skip("invalid_text", f"{error.reason} at character {error.start}")
    if not text.strip():
        return None, Skip("empty", "empty document")
    return text, None


def read_lines(shard: Path, start: int, report: SkipReport) -> Iterator[tuple[int, bytes]]:
    """Yields (line number, raw line) of the non-blank lines after the first ``start``.

    A shard that cannot be opened, is empty, is not gzip at all, or breaks off is
    reported (``unreadable_file``, ``truncated_file``) and read no further.
    """
    line_no = 0
    try:
        if shard.stat().st_size == 0:
            report("unreadable_file", 1, "the file is empty (0 bytes)")
            return
        with _open(shard) as handle:
            for line_no, raw in enumerate(handle, start=1):
                if line_no > start and raw.strip():
                    yield line_no, raw
    except GeneratorExit:  # closed early (also at interpreter exit): nothing to report
        raise
    except (EOFError, zlib.error) as error:  # a gzip stream that breaks off
        report("truncated_file", line_no + 1, f"read no further: {type(error).__name__}: {error}")
    except OSError as error:  # cannot open, not gzip at all (BadGzipFile), read error
        reason = "unreadable_file" if line_no == 0 else "truncated_file"
        report(reason, line_no + 1, f"read no further: {type(error).__name__}: {error}")


def iter_documents(shards: Sequence[Path], text_field: str, skipped: Counter[str]) -> Iterator[str]:
    """Yields the text of every good document of the shards, in order.

    Args:
        shards: Shard files, read one after another.
        text_field: JSON key holding the text.
        skipped: Counts of skipped input by reason; updated in place as lines are read.

    Yields:
        Document texts.
    """
    for shard in shards:
        report = SkipReport(shard, skipped)
        for line_no, raw in read_lines(shard, 0, report):
            text, skip = parse_line(raw, text_field)
            if skip is not None:
                report(skip.reason, line_no, skip.detail)
            else:
                yield text
        report.close()


class LocalShards:
    """The training documents of one reader out of ``num_readers``, from shards on disk.

    Each epoch reads the shards in an order shuffled from ``seed`` and the epoch (or in
    list order when ``shuffle`` is off).

    Args:
        shards: The split's shards now (:func:`shard_list`).
        text_field: JSON key holding the text.
        reader: This reader's index.
        num_readers: Readers over all ranks and workers.
        seed: The run's seed.
        shuffle: Shuffle the shards of every epoch.
        earlier: Shard lists that saved positions name, by digest (``[key, size]``
            pairs): an epoch that began with another list finishes with it.
    """

    def __init__(
        self,
        shards: Sequence[Shard],
        text_field: str,
        reader: int = 0,
        num_readers: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        earlier: dict[str, list[list[Any]]] | None = None,
    ) -> None:
        if not 0 <= reader < num_readers:
            raise ValueError(f"reader {reader} is outside {num_readers} readers")
        self.shards = list(shards)
        self.digest = list_digest(self.shards)
        self.text_field = text_field
        self.reader = reader
        self.num_readers = num_readers
        self.seed = seed
        self.shuffle = shuffle
        now = {s.key: s for s in self.shards}
        self.lists = {
            digest: [now.get(key) or Shard(key, size, None) for key, size in pairs]
            for digest, pairs in (earlier or {}).items()
        }
        self.lists[self.digest] = self.shards

    def documents(
        self, position: dict[str, Any] | None, skipped: Counter[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yields this reader's documents with their positions, epoch after epoch.

        Raises:
            DataError: A whole epoch gave this reader no document, or the position
                names a shard list or shard that is not there.
        """
        pos = position or {}
        epoch, first_file, first_line = pos.get("epoch", 0), pos.get("file", 0), pos.get("line", 0)
        seen, digest = pos.get("seen", 0), pos.get("list", self.digest)
        claims = reader_claims(pos, self.reader, self.num_readers) if "claims" in pos else None
        if digest not in self.lists:
            raise DataError(f"a saved data position names shard list {digest}, which is unknown")
        while True:
            order = epoch_order(self.lists[digest], self.seed, epoch, self.shuffle)
            if "shard" in pos and first_file < len(order) and order[first_file].key != pos["shard"]:
                raise DataError(
                    f"the saved data position is in shard {pos['shard']}, but that epoch's "
                    f"shard {first_file} is {order[first_file].key}"
                )
            found = yield from self._epoch(
                order, digest, epoch, first_file, first_line, seen, skipped, claims
            )
            if not found and first_file == 0 and first_line == 0:
                raise DataError(
                    f"reader {self.reader} of {self.num_readers} found no document in "
                    f"{len(order)} shard(s); add data or use fewer ranks/workers"
                )
            epoch, first_file, first_line, seen = epoch + 1, 0, 0, 0
            digest, pos = self.digest, {}

    def _epoch(
        self,
        order: list[Shard],
        digest: str,
        epoch: int,
        first_file: int,
        first_line: int,
        seen: int,
        skipped: Counter[str],
        claims: list[Claim] | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """One epoch from a position; returns whether it gave any document.

        ``claims``: the lines this reader takes when they are not its plain share.
        """
        found = False
        for index, shard in enumerate(order):
            if index < first_file:
                continue
            if shard.path is None:
                raise DataError(
                    f"shard {shard.key}, which the current epoch still has to read, is gone"
                )
            report = SkipReport(shard.path, skipped, count_files=self.reader == 0)
            line = first_line if index == first_file else 0
            for line_no, raw in read_lines(shard.path, line, report):
                seen += 1
                if claims is None:
                    if (seen - 1) % self.num_readers != self.reader:
                        continue
                elif not any(claim.takes(epoch, seen - 1) for claim in claims):
                    continue
                text, skip = parse_line(raw, self.text_field)
                if skip is not None:
                    report(skip.reason, line_no, skip.detail)
                    continue
                found = True
                position = {
                    "epoch": epoch, "file": index, "shard": shard.key, "line": line_no,
                    "seen": seen, "list": digest,
                }  # fmt: skip
                if claims is not None:
                    ahead = claims_ahead(claims, epoch, seen, self.reader, self.num_readers)
                    if ahead is None:
                        claims = None  # from here on, the plain share
                    else:
                        position["claims"] = ahead
                yield text, position
            report.close()
        return found
