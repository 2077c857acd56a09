"""Tests for weighted data mixtures (data.sources): proportions, exact resume, the seed,
each source's own text field, validation per source, and bad input."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from ancre.config import ConfigError, DataConfig, SourceConfig, load_config
from ancre.data.loader import TrainLoader
from ancre.data.mixture import source_states
from ancre.data.positions import check_resume_data
from ancre.data.regroup import regroup_loader_states
from ancre.data.shards import DataError, MissingDataError
from ancre.data.sources import check_data, interleave, split_texts
from ancre.data.tokenizer import Tokenizer, train_tokenizer
from ancre.data.validation import validation_set

ALPHABETS = {"long": "abcdefgh", "short": "ijklmnop", "mid": "qrstuvwx"}
"""Each source writes with its own letters, so a window's letters say whose it is."""
WORDS_PER_DOCUMENT = {"long": (150, 250), "short": (3, 12), "mid": (30, 60)}
WEIGHTS = {"long": 0.6, "short": 0.3, "mid": 0.1}


def make_documents(name: str, count: int, seed: int = 0) -> list[str]:
    rng = random.Random(f"{name}{seed}")
    low, high = WORDS_PER_DOCUMENT[name]
    letters = ALPHABETS[name]
    return [
        " ".join(
            "".join(rng.choice(letters) for _ in range(rng.randint(2, 6)))
            for _ in range(rng.randint(low, high))
        )
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three sources of unlike document lengths, four training shards each; ``short``
    keeps its text under the key ``body``."""
    root = tmp_path_factory.mktemp("mixture")
    for name in ALPHABETS:
        field = "body" if name == "short" else "text"
        for split, shards in (("train", 4), ("validation", 1)):
            for i in range(shards):
                texts = make_documents(name, 120 // shards, seed=100 * shards + i)
                lines = "".join(json.dumps({field: t}) + "\n" for t in texts)
                path = root / name / f"c4-{split}.{i:05d}-of-{shards:05d}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(lines)
    return root


@pytest.fixture(scope="module")
def mix_tokenizer(tmp_path_factory, corpus) -> Tokenizer:
    texts = [t for name in ALPHABETS for t in make_documents(name, 40)]
    return train_tokenizer(texts, tmp_path_factory.mktemp("tok") / "mix.model", vocab_size=300)


def mixture(corpus: Path, seq_len: int = 64, **changes) -> DataConfig:
    sources = [
        SourceConfig(
            name=name,
            weight=weight * 10,
            path=str(corpus / name),
            text_field="body" if name == "short" else "text",
        )  # fmt: skip
        for name, weight in WEIGHTS.items()
    ]
    return DataConfig(**{"sources": sources, "seq_len": seq_len, **changes})


def whose(tokenizer: Tokenizer, window: torch.Tensor) -> str:
    letters = set(tokenizer.decode(window.tolist())) - set(" ")
    [name] = [n for n, alphabet in ALPHABETS.items() if letters & set(alphabet)]
    assert letters <= set(ALPHABETS[name]), "a window holds two sources' text"
    return name


def test_a_mixture_lands_within_one_percent_of_its_weights_over_1m_tokens(
    corpus, mix_tokenizer
) -> None:
    loader = TrainLoader(mixture(corpus, seq_len=256), mix_tokenizer, 16, seed=3)
    tokens: Counter[str] = Counter()
    while sum(tokens.values()) < 1_000_000:
        inputs, _ = next(loader)  # (16, 256)
        for row in inputs:
            tokens[whose(mix_tokenizer, row)] += row.numel()
    total = sum(tokens.values())
    shares = {name: tokens[name] / total for name in WEIGHTS}
    print("measured shares over", total, "tokens:", shares)
    for name, weight in WEIGHTS.items():
        assert abs(shares[name] - weight) <= 0.01 * weight, (name, shares)
    taken = loader.state_dict()["readers"][0]["taken"]
    assert taken == dict(tokens)  # the reader's own count agrees with the windows' text


@pytest.mark.parametrize(("world_size", "workers"), [(1, 0), (1, 2), (2, 0)])
def test_a_mixture_resumes_exactly(corpus, mix_tokenizer, world_size, workers) -> None:
    config = mixture(corpus, num_workers=workers)
    for rank in range(world_size):
        loader = TrainLoader(config, mix_tokenizer, 4, rank, world_size, seed=1)
        for _ in range(7):
            next(loader)
        state = json.loads(json.dumps(loader.state_dict()))  # what a checkpoint stores
        expected = [next(loader) for _ in range(12)]
        restored = TrainLoader(config, mix_tokenizer, 4, rank, world_size, seed=1)
        restored.load_state_dict(state)
        for (x, y), (rx, ry) in zip(expected, (next(restored) for _ in range(12)), strict=True):
            assert torch.equal(x, rx) and torch.equal(y, ry)


def test_the_mixture_is_fixed_by_the_seed(corpus, mix_tokenizer) -> None:
    def first(seed: int) -> list[torch.Tensor]:
        loader = TrainLoader(mixture(corpus), mix_tokenizer, 4, seed=seed)
        return [next(loader)[0] for _ in range(40)]

    again = first(0)
    assert all(torch.equal(a, b) for a, b in zip(first(0), again, strict=True))
    others = [first(seed) for seed in (1, 2, 3)]  # each source's shards in another order
    assert any(not torch.equal(a[0], again[0]) for a in others)


def test_each_source_reads_its_own_text_field(corpus, mix_tokenizer) -> None:
    loader = TrainLoader(mixture(corpus), mix_tokenizer, 8)
    seen = {whose(mix_tokenizer, row) for _ in range(20) for row in next(loader)[0]}
    assert seen == set(WEIGHTS)
    assert loader.skipped() == Counter()  # ``short``'s lines were read under ``body``


def test_validation_holds_each_source_apart(corpus, mix_tokenizer) -> None:
    val = validation_set(mixture(corpus), mix_tokenizer, 64 * 3)
    assert [p.name for p in val.parts] == list(WEIGHTS)
    assert [round(p.weight, 6) for p in val.parts] == list(WEIGHTS.values())
    for part in val.parts:
        rows = val.inputs[part.rows]
        assert rows.shape == (3, 64)
        assert {whose(mix_tokenizer, row) for row in rows} == {part.name}
    inputs, targets = val  # one source's callers unpack it as before
    assert inputs.shape == targets.shape == (9, 64)


def test_tokenizer_training_reads_the_sources_in_proportion(corpus) -> None:
    texts = list(split_texts(mixture(corpus), "train", Counter()))
    assert len(texts) == 3 * 120  # every document of every source, once
    chars, documents = Counter(), Counter()
    longest = max(len(t) for t in texts)
    for text in texts:
        name = next(n for n, a in ALPHABETS.items() if text[0] in a)
        chars[name] += len(text)
        documents[name] += 1
        if documents[name] == 120:  # a source ran out: the others fill the rest
            break
        total = sum(chars.values())
        assert all(abs(chars[n] - w * total) <= longest for n, w in WEIGHTS.items())


def test_interleave_keeps_every_share_within_one_text_until_a_stream_ends() -> None:
    streams = [(0.75, iter(["aaa"] * 40)), (0.25, iter(["b"] * 100))]
    taken = Counter()
    for text in interleave(streams):
        taken[text[0]] += len(text)
        total = taken["a"] + taken["b"]
        if taken["a"] < 120:  # both streams still run
            assert abs(taken["a"] - 0.75 * total) <= 3 and abs(taken["b"] - 0.25 * total) <= 3
    assert taken == {"a": 120, "b": 100}  # then the rest of the other


def test_a_mixture_position_moves_only_between_equal_reader_counts(corpus, mix_tokenizer):
    loaders = [TrainLoader(mixture(corpus), mix_tokenizer, 2, r, 2, seed=0) for r in range(2)]
    for loader in loaders:
        next(loader)
    states = [loader.state_dict() for loader in loaders]
    moved, _ = regroup_loader_states(states, 1, 2)  # 2 processes -> 1 process x 2 workers
    assert moved[0]["readers"] == [s["readers"][0] for s in states]
    with pytest.raises(ValueError, match="a mixture's data positions cannot be split"):
        regroup_loader_states(states, 1, 0)
    assert check_resume_data(mixture(corpus), 0, states) == []


def test_a_changed_source_is_named_on_resume(tmp_path, corpus, mix_tokenizer) -> None:
    moved = tmp_path / "corpus"
    moved.mkdir()
    for name in ALPHABETS:
        (moved / name).symlink_to(corpus / name)
    loader = TrainLoader(mixture(moved), mix_tokenizer, 2)
    for _ in range(20):
        next(loader)
    state = loader.state_dict()
    assert source_states(state["readers"][0], "mid")["position"] is not None
    (moved / "mid").unlink()
    (moved / "mid").mkdir()
    (moved / "mid" / "c4-train.00000-of-00001.jsonl").write_text('{"text": "qrs tuv"}\n')
    with pytest.raises(DataError, match=r"data.sources\[2\].path="):
        check_resume_data(mixture(moved), 0, [state])


def test_a_missing_source_is_named_before_anything_runs(tmp_path, corpus) -> None:
    config = mixture(corpus)
    gone = DataConfig(
        sources=[*config.sources[:1], SourceConfig(name="code", path=str(tmp_path / "nope"))]
    )
    with pytest.raises(MissingDataError, match=r"data.sources\[1\] \('code'\): data.sources\[1\]"):
        check_data(gone)
    empty = tmp_path / "empty"
    empty.mkdir()
    bare = DataConfig(sources=[*config.sources[:1], SourceConfig(name="e", path=str(empty))])
    with pytest.raises(MissingDataError, match=r"data.sources\[1\].path: no train shards"):
        check_data(bare)


def test_a_source_with_no_document_is_named_while_reading(tmp_path, corpus, mix_tokenizer):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "c4-train.00000-of-00001.jsonl").write_text("not json\n{}\n")
    config = mixture(corpus)
    broken = DataConfig(
        sources=[*config.sources, SourceConfig(name="bad", weight=1.0, path=str(bad))],
        seq_len=64,
    )
    loader = TrainLoader(broken, mix_tokenizer, 4)
    with pytest.raises(DataError, match="data.sources 'bad': reader 0 of 1 found no document"):
        for _ in range(50):
            next(loader)


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ("{name: a, weight: 0, path: x}", r"data.sources\[0\].weight: is 0.0; it must be a pos"),
        ("{name: a, weight: -1, path: x}", r"data.sources\[0\].weight: is -1.0"),
        ("{name: 'a b', path: x}", r"data.sources\[0\].name: is 'a b'"),
        ("{name: a}", r"data.sources\[0\].path: source 'a' is local"),
        ("{name: a, source: hub}", r"data.sources\[0\].hub_name: source 'a' is hub"),
        ("{name: a, wieght: 2, path: x}", r"data.sources\[\].wieght: .*allowed: name, weight"),
    ],
)
def test_bad_sources_are_refused_by_key(tmp_path, item, error) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text(f"data:\n  sources:\n    - {item}\n")
    with pytest.raises(ConfigError, match=error):
        load_config(path)


def test_two_sources_of_one_name_are_refused(tmp_path) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text("data:\n  sources:\n    - {name: a, path: x}\n    - {name: a, path: y}\n")
    with pytest.raises(ConfigError, match=r"data.sources\[1\].name: 'a' names two sources"):
        load_config(path)
