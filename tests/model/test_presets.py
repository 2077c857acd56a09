"""Tests for ancre/model/presets.py: the named sizes and shape resolution."""

from __future__ import annotations

import pytest

from ancre.config import ConfigError, ModelConfig
from ancre.model.presets import PRESETS, resolve_shape

# docs/method.md: size -> (hidden, intermediate, heads, layers)
PAPER_SHAPES = {
    "60m": (512, 1376, 8, 8),
    "130m": (768, 2048, 12, 12),
    "350m": (1024, 2736, 16, 24),
    "1b": (2048, 5461, 32, 24),
}


@pytest.mark.parametrize("name", PAPER_SHAPES)
def test_paper_presets(name: str) -> None:
    shape = resolve_shape(ModelConfig(preset=name), vocab_size=32000, seq_len=256)
    hidden, intermediate, heads, layers = PAPER_SHAPES[name]
    assert shape.hidden_size == hidden
    assert shape.intermediate_size == intermediate
    assert shape.num_heads == heads
    assert shape.num_layers == layers
    assert shape.head_dim * heads == hidden


def test_every_preset_resolves() -> None:
    for name in PRESETS:
        shape = resolve_shape(ModelConfig(preset=name), vocab_size=512, seq_len=128)
        assert shape.head_dim % 2 == 0


def test_fields_override_the_preset() -> None:
    model = ModelConfig(preset="60m", num_layers=2, max_seq_len=1024, rope_theta=500000.0)
    shape = resolve_shape(model, vocab_size=512, seq_len=256)
    assert (shape.hidden_size, shape.num_layers) == (PAPER_SHAPES["60m"][0], 2)
    assert (shape.max_seq_len, shape.rope_theta) == (1024, 500000.0)


def test_null_fields_take_tokenizer_and_data() -> None:
    shape = resolve_shape(ModelConfig(preset="tiny"), vocab_size=777, seq_len=96)
    assert (shape.vocab_size, shape.max_seq_len) == (777, 96)


def test_preset_null_uses_given_shape() -> None:
    model = ModelConfig(
        preset=None, hidden_size=64, intermediate_size=160, num_layers=3, num_heads=4
    )
    shape = resolve_shape(model, vocab_size=300, seq_len=32)
    assert (shape.hidden_size, shape.intermediate_size, shape.num_layers) == (64, 160, 3)
    assert shape.head_dim == 16


def test_heads_must_divide_hidden() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_shape(ModelConfig(preset="tiny", num_heads=3), vocab_size=512, seq_len=64)
    assert info.value.key == "model.num_heads" and "do not divide" in str(info.value)


def test_head_size_must_be_even() -> None:
    model = ModelConfig(preset="tiny", hidden_size=96, num_heads=32)
    with pytest.raises(ConfigError) as info:
        resolve_shape(model, vocab_size=512, seq_len=64)
    assert info.value.key == "model.num_heads" and "head size 3" in str(info.value)


def test_vocab_must_match_tokenizer() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_shape(ModelConfig(preset="tiny", vocab_size=1000), vocab_size=512, seq_len=64)
    assert info.value.key == "model.vocab_size"
    assert "1000" in str(info.value) and "512" in str(info.value)
    shape = resolve_shape(ModelConfig(preset="tiny", vocab_size=512), vocab_size=512, seq_len=64)
    assert shape.vocab_size == 512
