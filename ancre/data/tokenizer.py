"""Tokenizers: a sentencepiece model or a Hugging Face ``tokenizers`` JSON; training either.

A run's tokenizer file (``data.tokenizer``, or the one a run trains, kept in the run
folder and every checkpoint as ``tokenizer.model``) is one of:

- a sentencepiece model (``.model``, protobuf), unigram or BPE, as trained here or
  shipped with T5 and Llama 2;
- a ``tokenizers`` JSON (``tokenizer.json``), as shipped with most models of the
  Hugging Face hub and as the byte-level BPE of ``data.tokenizer_model: byte_bpe``.

Which one a file is, is read from its first byte (a JSON object starts with ``{``).
Both give the same interface: ids without BOS or EOS added, the EOS id that packing
puts between documents, decode.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece as spm
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from ancre.atomic import write_bytes_atomic
from ancre.data.shards import DataError

logger = logging.getLogger(__name__)

EOS_TOKENS = ("</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "<|eos|>", "<|im_end|>")
"""Special tokens taken for the end of a document in a tokenizers JSON, in this order."""
BYTE_BPE_EOS = "<|endoftext|>"
"""The end-of-document token of the byte-level BPE trained here (GPT-2's)."""
KINDS = ("sentencepiece", "tokenizers")


class Tokenizer:
    """A tokenizer file: text to token ids and back.

    Attributes:
        path: The file it was loaded from.
        kind: ``sentencepiece`` or ``tokenizers``.
        vocab_size: Number of ids (pieces, or the vocabulary with its added tokens).
        eos_id: Id of the end-of-document token that separates packed documents.
        eos_token: That token's text.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"data.tokenizer={str(path)!r}: no such tokenizer file; give a sentencepiece "
                ".model or a tokenizers .json file, or set data.tokenizer to null to train one "
                "on the shards"
            )
        with open(self.path, "rb") as handle:
            head = handle.read(64).lstrip()
        self.kind = "tokenizers" if head.startswith(b"{") else "sentencepiece"
        if self.kind == "tokenizers":
            self._load_json(str(path))
        else:
            self._load_sentencepiece(str(path))

    def _load_sentencepiece(self, path: str) -> None:
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except (OSError, RuntimeError) as error:
            raise DataError(
                f"data.tokenizer={path!r}: neither a sentencepiece model nor a tokenizers JSON "
                f"({error}); give a .model file written by sentencepiece or a tokenizer.json, or "
                "set data.tokenizer to null to train one"
            ) from None
        self.vocab_size: int = self._sp.get_piece_size()
        self.eos_id: int = self._sp.eos_id()
        if self.eos_id < 0:
            raise DataError(
                f"data.tokenizer={path!r}: the tokenizer has no end-of-sequence piece, "
                "which packing needs between documents"
            )
        self.eos_token = self._sp.id_to_piece(self.eos_id)

    def _load_json(self, path: str) -> None:
        try:
            self._hf = tokenizers.Tokenizer.from_file(str(self.path))
        except Exception as error:  # the library raises its own Exception subclasses
            raise DataError(
                f"data.tokenizer={path!r}: a JSON file but not a tokenizers JSON "
                f"({str(error)[:200]}); give a tokenizer.json written by the tokenizers library"
            ) from None
        self.vocab_size = self._hf.get_vocab_size(with_added_tokens=True)
        eos = next((t for t in EOS_TOKENS if self._hf.token_to_id(t) is not None), None)
        if eos is None:
            raise DataError(
                f"data.tokenizer={path!r}: the tokenizer has none of the end-of-document "
                f"tokens {', '.join(EOS_TOKENS)}, which packing needs between documents"
            )
        self.eos_token = eos
        self.eos_id = int(self._hf.token_to_id(eos))

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (no BOS/EOS added)."""
        if self.kind == "tokenizers":
            return [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=False)]
        return self._sp.encode(list(texts), num_threads=1)

    def encode_one(self, text: str) -> list[int]:
        """Token ids of one text (no BOS/EOS added)."""
        if self.kind == "tokenizers":
            return self._hf.encode(text, add_special_tokens=False).ids
        return self._sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of a sequence of ids."""
        if self.kind == "tokenizers":
            return self._hf.decode(list(ids), skip_special_tokens=False)
        return self._sp.decode(list(ids))

    def special_tokens(self) -> dict[str, tuple[str, int]]:
        """(token, id) of the unk, bos, eos and pad tokens it has; pad is EOS when it has none."""
        if self.kind == "sentencepiece":
            sp = self._sp
            ids = {"unk_token": sp.unk_id(), "bos_token": sp.bos_id(), "eos_token": sp.eos_id()}
            ids["pad_token"] = sp.pad_id() if sp.pad_id() >= 0 else sp.eos_id()
            return {name: (sp.id_to_piece(i), i) for name, i in ids.items() if i >= 0}
        found = {
            "eos_token": (self.eos_token, self.eos_id),
            "pad_token": (self.eos_token, self.eos_id),
        }
        for name, token in (("unk_token", "<unk>"), ("bos_token", "<s>")):
            if (index := self._hf.token_to_id(token)) is not None:
                found[name] = (token, int(index))
        return found


def train_tokenizer(
    texts: Iterable[str],
    path: str | Path,
    vocab_size: int,
    model_type: str = "unigram",
    max_chars: int = 200_000_000,
    num_threads: int = 1,
) -> Tokenizer:
    """Trains a tokenizer on documents and writes it atomically.

    ``unigram`` and ``bpe`` are sentencepiece models: deterministic for the same texts in
    the same order and the same ``num_threads``, with byte fallback (no text is ever out
    of vocabulary) and no normalisation, so ``decode(encode(text)) == text`` (spaces,
    tabs and newlines included). ``byte_bpe`` is a byte-level BPE of the ``tokenizers``
    library (GPT-2's pre-tokenisation, 256 byte symbols, ``<|endoftext|>``), written as
    its JSON: it also round-trips any text.

    Args:
        texts: Documents; each line of a document is one training sentence.
        path: Where to write the tokenizer file.
        vocab_size: Number of pieces wanted; text with too few distinct pieces gives fewer.
        model_type: ``unigram``, ``bpe`` or ``byte_bpe``.
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

    if model_type == "byte_bpe":
        return _train_byte_bpe(sentences(), Path(path), vocab_size)
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


def _train_byte_bpe(sentences: Iterator[str], path: Path, vocab_size: int) -> Tokenizer:
    """A byte-level BPE of the tokenizers library, trained and written as its JSON."""
    model = tokenizers.Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[BYTE_BPE_EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    model.train_from_iterator(sentences, trainer=trainer)
    write_bytes_atomic(path, model.to_str().encode("utf-8"))
    tokenizer = Tokenizer(path)
    logger.info("trained a byte-level BPE of %d tokens: %s", tokenizer.vocab_size, path)
    return tokenizer
