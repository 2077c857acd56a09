"""Fixtures of the data tests: generated documents, shard writers, a small tokenizer."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from ancre.data.tokenizer import Tokenizer, train_tokenizer

WORDS = (
    "the river stone anchor layer residual weight matrix token window shard packing "
    "learning rate batch step model softmax block state embedding gradient cosine warmup "
    "north quiet amber lantern harbour meadow copper violet thunder orchard"
).split()

WriteShard = Callable[[Path, Sequence[str]], Path]
WriteLines = Callable[[Path, Sequence[str | bytes]], Path]


def _make_documents(count: int, seed: int = 0) -> list[str]:
    """Distinct documents of one to three paragraphs, each starting with its number."""
    rng = random.Random(seed)
    documents = []
    for i in range(count):
        paragraphs = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 20))) + "."
            for _ in range(rng.randint(1, 3))
        ]
        paragraphs[0] = f"Document {i}: {paragraphs[0].capitalize()}"
        documents.append("\n".join(paragraphs))
    return documents


def _write_lines(path: Path, lines: Sequence[str | bytes]) -> Path:
    """Writes raw lines (gzipped when the name ends in .gz); bytes are written as given."""
    data = b"".join((ln if isinstance(ln, bytes) else ln.encode("utf-8")) + b"\n" for ln in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.fixture(scope="session")
def documents() -> list[str]:
    """200 distinct generated documents."""
    return _make_documents(200)


@pytest.fixture
def write_shard() -> WriteShard:
    """Writes documents as C4 JSON lines (``{"text": ..., "url": ...}``) to a shard file."""

    def write(path: Path, texts: Sequence[str]) -> Path:
        records = [
            json.dumps({"text": t, "url": f"https://example.org/{i}"}) for i, t in enumerate(texts)
        ]
        return _write_lines(path, records)

    return write


@pytest.fixture
def write_lines() -> WriteLines:
    """Writes raw lines to a shard file (gzipped when the name ends in .gz)."""
    return _write_lines


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory, documents: list[str]) -> Tokenizer:
    """A 320-piece unigram tokenizer trained on the generated documents."""
    path = tmp_path_factory.mktemp("tokenizer") / "small.model"
    return train_tokenizer(documents, path, vocab_size=320)
