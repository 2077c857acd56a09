"""Tests for ancre/data/tokenizer.py: training, loading, encoding and decoding."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import sentencepiece as spm
import tokenizers

from ancre.data.packing import pack_documents
from ancre.data.shards import DataError
from ancre.data.tokenizer import Tokenizer, train_tokenizer


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_training_is_deterministic(tmp_path: Path, documents, model_type) -> None:
    first = train_tokenizer(documents, tmp_path / "a.model", 320, model_type)
    second = train_tokenizer(documents, tmp_path / "b.model", 320, model_type)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.vocab_size == 320
    assert not list(tmp_path.glob(".*tmp"))


def test_unigram_and_bpe_differ(tmp_path: Path, documents) -> None:
    unigram = train_tokenizer(documents, tmp_path / "u.model", 320, "unigram")
    bpe = train_tokenizer(documents, tmp_path / "b.model", 320, "bpe")
    assert unigram.path.read_bytes() != bpe.path.read_bytes()


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_round_trip_keeps_spaces(tmp_path: Path, documents, model_type) -> None:
    tokenizer = train_tokenizer(documents, tmp_path / "t.model", 320, model_type)
    texts = ["the  river   stone", "  leading and trailing  ", "Ünïcode ✓ 42 zebra"]
    texts += [document.replace("\n", "  ") for document in documents[:20]]
    for text, ids in zip(texts, tokenizer.encode(texts), strict=True):
        assert tokenizer.decode(ids) == text


def test_round_trip_keeps_newlines_and_tabs(tokenizer: Tokenizer, documents) -> None:
    texts = ["anchor layer\n\nresidual\tweight\n", *documents[:5]]
    assert any("\n" in text for text in texts[1:])
    for text, ids in zip(texts, tokenizer.encode(texts), strict=True):
        assert tokenizer.decode(ids) == text


def test_eos_piece(tokenizer: Tokenizer) -> None:
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer.path))
    assert 0 <= tokenizer.eos_id < tokenizer.vocab_size
    assert processor.id_to_piece(tokenizer.eos_id) == "</s>"
    assert tokenizer.eos_id not in tokenizer.encode(["the river </s> stone"])[0]


def test_loading_a_saved_model(tokenizer: Tokenizer, documents) -> None:
    loaded = Tokenizer(tokenizer.path)
    assert loaded.vocab_size == tokenizer.vocab_size
    assert loaded.encode(documents[:5]) == tokenizer.encode(documents[:5])


def test_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.model"
    with pytest.raises(FileNotFoundError) as info:
        Tokenizer(missing)
    assert str(missing) in str(info.value)


def test_soft_vocabulary_limit(tmp_path: Path, documents, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ancre.data.tokenizer"):
        tokenizer = train_tokenizer(documents[:30], tmp_path / "t.model", 5000)
    assert tokenizer.vocab_size < 5000
    assert f"only {tokenizer.vocab_size} of the 5000" in caplog.text


def test_a_t5_style_model_file_works(tmp_path, documents) -> None:
    """t5-base's spiece.model numbers pad 0, eos 1, unk 2 and has no bos; packing follows it."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(documents), model_writer=model, vocab_size=100,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
    )  # fmt: skip
    (tmp_path / "spiece.model").write_bytes(model.getvalue())
    tokenizer = Tokenizer(tmp_path / "spiece.model")
    assert tokenizer.eos_id == 1 and tokenizer.vocab_size == 100
    ids = tokenizer.encode(documents[:2])
    windows = list(pack_documents(ids, tokenizer.eos_id, 8))
    assert [t for w in windows for t in w] == (ids[0] + [1] + ids[1] + [1])[: 8 * len(windows)]


def test_a_byte_level_bpe_trains_deterministically_and_round_trips(tmp_path, documents) -> None:
    first = train_tokenizer(documents, tmp_path / "a.json", 400, "byte_bpe")
    second = train_tokenizer(documents, tmp_path / "b.json", 400, "byte_bpe")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.kind == "tokenizers" and first.vocab_size == 400
    assert first.eos_token == "<|endoftext|>" and first.eos_id == 0
    text = "Tabs\tand  spaces,\nnew lines, ünïcödé and 12345."
    assert first.decode(first.encode_one(text)) == text
    assert first.encode([text, "b"]) == [first.encode_one(text), first.encode_one("b")]
    assert first.special_tokens() == {
        "eos_token": ("<|endoftext|>", 0), "pad_token": ("<|endoftext|>", 0)
    }  # fmt: skip


def test_a_tokenizers_json_is_read_by_its_content_whatever_its_name(tmp_path, documents) -> None:
    trained = train_tokenizer(documents, tmp_path / "tokenizer.json", 300, "byte_bpe")
    renamed = tmp_path / "tokenizer.model"  # as a run folder and a checkpoint keep it
    renamed.write_bytes(trained.path.read_bytes())
    assert Tokenizer(renamed).kind == "tokenizers"
    assert Tokenizer(renamed).encode(documents[:3]) == trained.encode(documents[:3])


@pytest.mark.parametrize(
    "content, says",
    [
        (b"not a model at all", "neither a sentencepiece model nor a tokenizers JSON"),
        (b'{"version": "1.0", "vocab": [1, 2]}', "a JSON file but not a tokenizers JSON"),
    ],
)
def test_a_file_of_neither_kind_is_refused_naming_it(tmp_path, content, says) -> None:
    path = tmp_path / "tok.bin"
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        Tokenizer(path)
    assert str(path) in str(error.value) and says in str(error.value)


def test_a_tokenizers_json_without_an_end_of_document_token_is_refused(tmp_path) -> None:
    plain = tokenizers.Tokenizer(tokenizers.models.BPE())
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=30, show_progress=False)
    plain.train_from_iterator(["a b c d"], trainer)
    path = tmp_path / "tokenizer.json"
    plain.save(str(path))
    with pytest.raises(DataError, match="none of the end-of-document tokens"):
        Tokenizer(path)
