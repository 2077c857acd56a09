"""Sentencepiece tokenizers: loading a model file, or training one from shards."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece as spm

from ancre.atomic import write_bytes_atomic
from ancre.data.shards import DataError

logger = logging.getLogger(__name__)


class Tokenizer:
    """A sentencepiece model: text to token ids and back.

    Attributes:
        path: The ``.model`` file it was loaded from.
        vocab_size: Number of pieces.
        eos_id: Id of the end-of-document token that separates packed documents.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"data.tokenizer={str(path)!r}: no such sentencepiece model file; give a "
                ".model file or set data.tokenizer to null to train one on the shards"
            )
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except (OSError, RuntimeError) as error:
            raise DataError(
                f"data.tokenizer={str(path)!r}: not a sentencepiece model ({error}); give a "
                ".model file written by sentencepiece, or set data.tokenizer to null to train one"
            ) from None
        self.vocab_size: int = self._sp.get_piece_size()
        self.eos_id: int = self._sp.eos_id()
        if self.eos_id < 0:
            raise DataError(
                f"data.tokenizer={str(path)!r}: the tokenizer has no end-of-sequence piece, "
                "which packing needs between documents"
            )

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (no BOS/EOS added)."""
        return self._sp.encode(list(texts), num_threads=1)

    def encode_one(self, text: str) -> list[int]:
        """Token ids of one text (no BOS/EOS added)."""
        return self._sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of a sequence of ids."""
        return self._sp.decode(list(ids))


def train_tokenizer(
    texts: Iterable[str],
    path: str | Path,
    vocab_size: int,
    model_type: str = "unigram",
    max_chars: int = 200_000_000,
    num_threads: int = 1,
) -> Tokenizer:
    """Trains a sentencepiece model on documents and writes it atomically.

    Training is deterministic for the same texts in the same order and the same
    ``num_threads``. Byte fallback is on, so no text is ever out of vocabulary, and
    text is not normalised, so ``decode(encode(text)) == text`` (spaces, tabs and
    newlines included).

    Args:
        texts: Documents; each line of a document is one training sentence.
        path: Where to write the ``.model`` file.
        vocab_size: Number of pieces wanted; text with too few distinct pieces gives fewer.
        model_type: ``unigram`` or ``bpe``.
        max_chars: Stop reading documents after this many characters.
        num_threads: Trainer threads; the model depends on them, so keep them fixed to
            reproduce a tokenizer.

    Returns:
        The trained tokenizer.

    Raises:
        DataError: sentencepiece refused the settings (e.g. too few pieces for the
            characters of the text) or the text.
    """

    def sentences() -> Iterator[str]:
        seen = 0
        for text in texts:
            for line in text.split("\n"):
                if line.strip():
                    yield line
            seen += len(text)
            if seen >= max_chars:
                return

    model = io.BytesIO()
    try:
        _train(sentences(), model, vocab_size, model_type, num_threads)
    except RuntimeError as error:
        blame = "; lower data.tokenizer_vocab_size" if "vocab" in str(error).lower() else ""
        raise DataError(
            f"sentencepiece could not train a {vocab_size}-piece {model_type} tokenizer on "
            f"the training data: {error}{blame}"
        ) from None
    write_bytes_atomic(path, model.getvalue())
    tokenizer = Tokenizer(path)
    if tokenizer.vocab_size < vocab_size:
        logger.warning(
            "the text supports only %d of the %d pieces of data.tokenizer_vocab_size",
            tokenizer.vocab_size,
            vocab_size,
        )
    logger.info("trained a %s tokenizer of %d pieces: %s", model_type, tokenizer.vocab_size, path)
    return tokenizer


def _train(
    sentences: Iterator[str], model: io.BytesIO, vocab_size: int, model_type: str, threads: int
) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences,
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        byte_fallback=True,
        character_coverage=0.9995,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        shuffle_input_sentence=False,
        num_threads=threads,
        hard_vocab_limit=False,
        minloglevel=2,
    )
