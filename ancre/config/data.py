"""The data section: where documents come from, one source or a weighted mixture.

A run reads one source (``data.source``, ``data.path`` or ``data.hub_name``,
``data.text_field``) or, when ``data.sources`` lists any, a mixture of several, each
with a name, a weight and its own place and text field. :meth:`DataConfig.parts` gives
the sources of either kind as single-source sections, so that everything that reads
one source (finding shards, checking them, validation, resume checks) reads each part.

This module imports nothing else from ``ancre`` but the config's checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ancre.config.checks import ConfigError, choice, non_negative, positive

DATA_SOURCES = ("local", "hub")
PACKING_MODES = ("docs", "docs_masked", "none")
TOKENIZER_MODELS = ("unigram", "bpe", "byte_bpe")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
"""What a mixture source's name may hold: it becomes a metrics key (val_loss/<name>)."""


@dataclass(frozen=True)
class SourceConfig:
    """One source of a mixture (an item of ``data.sources``)."""

    name: str = ""
    """Its name in metrics (``val_loss/<name>``) and in the saved data position: letters,
    digits, ``_``, ``.`` and ``-``; unique within the mixture."""
    weight: float = 1.0
    """Its share of the training tokens, relative to the other sources' weights."""
    source: str = "local"
    """local (C4-format shards under path) or hub (stream hub_name)."""
    path: str | None = None
    """Folder holding its shards, or a glob matching them (source: local)."""
    hub_name: str | None = None
    """Dataset streamed when source is hub."""
    hub_subset: str | None = None
    """Configuration of the hub dataset (null: the dataset's default)."""
    text_field: str = "text"
    """Key of each JSON line (or hub example) that holds the document text."""


class DataPart(NamedTuple):
    """One source of the data section, as a single-source section of its own.

    Attributes:
        name: The source's name ("" for the one source of a section without
            ``data.sources``).
        weight: Its weight, normalised so that the parts' weights sum to 1.
        config: A data section reading this source alone (every other key kept).
        key: Where its settings are, for messages: ``data`` or ``data.sources[i]``.
    """

    name: str
    weight: float
    config: DataConfig
    key: str


@dataclass(frozen=True)
class DataConfig:
    """Where documents come from and how they become token sequences."""

    source: str = "local"
    """local: C4-format JSON-lines shards (.json.gz or .jsonl) under data.path; hub: stream
    data.hub_name from the Hugging Face hub."""
    path: str = "data/sample"
    """Folder holding the shards, or a glob matching them (data.source: local)."""
    hub_name: str = "allenai/c4"
    """Dataset streamed when data.source is hub."""
    hub_subset: str = "en"
    """Configuration of the hub dataset."""
    text_field: str = "text"
    """Key of each JSON line (or hub example) that holds the document text."""
    sources: list[SourceConfig] = field(default_factory=list)
    """A weighted mixture (docs/data.md): a list of sources, each with name, weight,
    source, path or hub_name and hub_subset, text_field. When it lists any, they replace
    data.source, data.path, data.hub_name, data.hub_subset and data.text_field; each
    window of training tokens comes from one source, chosen so that every source's
    share of the tokens stays at its weight."""
    tokenizer: str | None = None
    """Path to a tokenizer file: a sentencepiece .model or a tokenizers tokenizer.json (as
    models on the Hugging Face hub ship it); null trains one on the training shards."""
    tokenizer_vocab_size: int = 4096
    """Vocabulary size of a tokenizer trained by the run (data.tokenizer: null)."""
    tokenizer_model: str = "unigram"
    """Algorithm of a tokenizer trained by the run: unigram or bpe (sentencepiece), or
    byte_bpe (a byte-level BPE of the tokenizers library, kept as its JSON)."""
    seq_len: int = 256
    """Tokens per training sequence (the model sees seq_len inputs and seq_len targets)."""
    packing: str = "docs"
    """docs: documents joined with EOS and cut into windows with no padding; docs_masked:
    the same windows, each document read apart (attention within it, no prediction
    across an EOS; ancre/model/documents.py); none: one window per document, truncated
    or padded, padding masked out of the loss."""
    restart_positions: bool = True
    """With packing docs_masked: rotary positions restart at 0 at every document's first
    token (false: the window's own positions)."""
    num_workers: int = 0
    """DataLoader worker processes per rank that read and tokenize; 0 reads in the trainer."""
    shuffle: bool = True
    """Read the training shards in a seeded random order, new each epoch."""

    @property
    def is_mixture(self) -> bool:
        """Whether the run reads a mixture (``data.sources`` lists any)."""
        return bool(self.sources)

    def parts(self) -> list[DataPart]:
        """Each source as a single-source section (see :class:`DataPart`).

        One source (no ``data.sources``) is the single part ``("", 1.0, self, "data")``.
        """
        if not self.sources:
            return [DataPart("", 1.0, self, "data")]
        total = sum(s.weight for s in self.sources)
        return [
            DataPart(
                s.name,
                s.weight / total,
                replace(
                    self,
                    source=s.source,
                    path=s.path or "",
                    text_field=s.text_field,
                    hub_name=s.hub_name or "",
                    hub_subset=s.hub_subset or "",
                    sources=[],
                ),  # fmt: skip
                f"data.sources[{index}]",
            )
            for index, s in enumerate(self.sources)
        ]

    def check(self) -> None:
        """Raises ConfigError naming the first field of this section that is not allowed."""
        choice("data.source", self.source, DATA_SOURCES)
        choice("data.packing", self.packing, PACKING_MODES)
        choice("data.tokenizer_model", self.tokenizer_model, TOKENIZER_MODELS)
        positive("data.tokenizer_vocab_size", self.tokenizer_vocab_size)
        positive("data.seq_len", self.seq_len)
        non_negative("data.num_workers", self.num_workers)
        if not self.text_field:
            raise ConfigError("data.text_field", "must name the JSON key that holds the text")
        names: set[str] = set()
        for index, source in enumerate(self.sources):
            _check_source(f"data.sources[{index}]", source, names)


def _check_source(key: str, source: SourceConfig, names: set[str]) -> None:
    """Refuses a mixture source without a usable name, weight or place."""
    if not SOURCE_NAME.match(source.name):
        raise ConfigError(
            f"{key}.name",
            f"is {source.name!r}; give each source a name of letters, digits, _, . or - "
            "(it names the source's val_loss/<name> in metrics.jsonl)",
        )
    if source.name in names:
        raise ConfigError(f"{key}.name", f"{source.name!r} names two sources; names are unique")
    names.add(source.name)
    positive(f"{key}.weight", source.weight)
    choice(f"{key}.source", source.source, DATA_SOURCES)
    if source.source == "local" and not source.path:
        message = f"source {source.name!r} is local: give the folder of its shards"
        raise ConfigError(f"{key}.path", message)
    if source.source == "hub" and not source.hub_name:
        raise ConfigError(f"{key}.hub_name", f"source {source.name!r} is hub: name the dataset")
    if not source.text_field:
        raise ConfigError(f"{key}.text_field", "must name the JSON key that holds the text")
