"""Documents from C4-format shards on disk: gzipped (or plain) JSON lines with a text field.

Shards are found by split name, as allenai/c4 names them
(``c4-train.00000-of-01024.json.gz``, ``c4-validation.00000-of-00008.json.gz``).
Bad input never stops a run and never passes silently: a malformed line, a line
without the text field, invalid UTF-8, an empty document or a truncated gzip member
is skipped, counted by reason, and reported with its file and line.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

SHARD_SUFFIXES = (".json.gz", ".jsonl.gz", ".jsonl", ".json")
SKIP_REASONS = ("malformed_json", "missing_field", "invalid_utf8", "empty", "truncated_file")
"""Why an input line can be skipped; the keys of the skip counters."""
MAX_WARNINGS_PER_FILE = 5


class MissingDataError(FileNotFoundError):
    """No shard matches what the config asks for."""


def find_shards(path: str, split: str) -> list[Path]:
    """Lists the shards of one split under a folder, or matching a glob, in name order.

    Args:
        path: A folder (searched recursively) or a glob pattern (``data/c4/*.json.gz``).
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
        candidates = [p for p in Path(path).rglob("*")]
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


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


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
        yield from _read_shard(shard, text_field, skipped)


def _read_shard(shard: Path, text_field: str, skipped: Counter[str]) -> Iterator[str]:
    warned = 0

    def skip(reason: str, line_no: int, detail: str) -> None:
        nonlocal warned
        skipped[reason] += 1
        warned += 1
        if warned <= MAX_WARNINGS_PER_FILE:
            logger.warning("skipped %s:%d (%s): %s", shard, line_no, reason, detail)

    line_no = 0
    try:
        with _open(shard) as handle:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    skip("invalid_utf8", line_no, str(error))
                    continue
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    skip("malformed_json", line_no, str(error))
                    continue
                text = record.get(text_field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    skip("missing_field", line_no, f"no string field {text_field!r}")
                    continue
                if not text.strip():
                    skip("empty", line_no, "empty document")
                    continue
                yield text
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        skip("truncated_file", line_no + 1, f"stopped reading this file: {error}")
    if warned > MAX_WARNINGS_PER_FILE:
        logger.warning("%s: %d lines skipped in all", shard, warned)
