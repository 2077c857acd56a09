"""Named model sizes and the resolution of a model config into a concrete shape.

The 60m-1b shapes are the Llama shapes of the GaLore protocol that the Ancre paper
uses (docs/method.md); 7b is Llama-2-7B's; ``tiny`` trains in minutes on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ancre.config import ConfigError, ModelConfig


@dataclass(frozen=True)
class ModelShape:
    """Every number the decoder is built from.

    Attributes:
        hidden_size: Width D of the residual stream.
        intermediate_size: Width of the SwiGLU hidden layer.
        num_layers: Number of decoder blocks L.
        num_heads: Number of attention heads H; head size is D / H.
        num_kv_heads: Key and value heads (grouped-query attention when below H).
        vocab_size: Vocabulary size V.
        max_seq_len: Longest sequence the rotary tables cover.
        rope_theta: Base of the rotary frequencies.
        norm_eps: RMSNorm epsilon.
        init_std: Standard deviation of the weight initialisation.
        init: ``normal``, or ``depth_scaled`` (output projections at init_std / sqrt(2 L)).
        laurel: LAuReL's variant on the blocks' residual connections (``none``: plain).
        laurel_rank: Rank of LAuReL's low-rank map.
        value_residual: Later blocks' attention mixes in the first block's values.
    """

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    max_seq_len: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    init: str = "normal"
    num_kv_heads: int = 0
    laurel: str = "none"
    laurel_rank: int = 16
    value_residual: bool = False

    def __post_init__(self) -> None:
        if not self.num_kv_heads:  # multi-head attention: a key and value head per query head
            object.__setattr__(self, "num_kv_heads", self.num_heads)

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class Preset:
    """The numbers a named size fixes (the rest come from the config and the tokenizer)."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int


PRESETS: dict[str, Preset] = {
    "tiny": Preset(hidden_size=128, intermediate_size=352, num_layers=6, num_heads=4),
    "60m": Preset(hidden_size=512, intermediate_size=1376, num_layers=8, num_heads=8),
    "130m": Preset(hidden_size=768, intermediate_size=2048, num_layers=12, num_heads=12),
    "350m": Preset(hidden_size=1024, intermediate_size=2736, num_layers=24, num_heads=16),
    "1b": Preset(hidden_size=2048, intermediate_size=5461, num_layers=24, num_heads=32),
    "7b": Preset(hidden_size=4096, intermediate_size=11008, num_layers=32, num_heads=32),
}


def resolve_shape(model: ModelConfig, vocab_size: int, seq_len: int) -> ModelShape:
    """Turns a model config into a shape: the preset's numbers, overridden by set fields.

    Args:
        model: The ``model`` section of the config.
        vocab_size: The tokenizer's vocabulary size.
        seq_len: The data's sequence length, used when ``model.max_seq_len`` is null.

    Returns:
        The shape to build.

    Raises:
        ConfigError: The vocabulary differs from the tokenizer's, or the heads do not
            divide the hidden size into even head sizes.
    """
    # validate() guarantees every shape field is set when there is no preset
    preset = PRESETS[model.preset] if model.preset is not None else Preset(0, 0, 0, 0)
    shape = ModelShape(
        hidden_size=model.hidden_size or preset.hidden_size,
        intermediate_size=model.intermediate_size or preset.intermediate_size,
        num_layers=model.num_layers or preset.num_layers,
        num_heads=model.num_heads or preset.num_heads,
        vocab_size=model.vocab_size or vocab_size,
        max_seq_len=model.max_seq_len or seq_len,
        rope_theta=model.rope_theta,
        norm_eps=model.norm_eps,
        init_std=model.init_std,
        init=model.init,
        num_kv_heads=model.num_kv_heads or 0,
        laurel=model.laurel,
        laurel_rank=model.laurel_rank,
        value_residual=model.value_residual,
    )
    if shape.vocab_size != vocab_size:
        raise ConfigError(
            "model.vocab_size",
            f"is {shape.vocab_size} but the tokenizer has {vocab_size} pieces; "
            "set it to null to take the tokenizer's size, or use a matching tokenizer",
        )
    if shape.hidden_size % shape.num_heads:
        raise ConfigError(
            "model.num_heads",
            f"{shape.num_heads} heads do not divide model.hidden_size={shape.hidden_size}",
        )
    if shape.num_heads % shape.num_kv_heads:
        raise ConfigError(
            "model.num_kv_heads",
            f"{shape.num_kv_heads} key/value heads do not divide model.num_heads="
            f"{shape.num_heads}; give a divisor (null: one per query head)",
        )
    if shape.head_dim % 2:
        raise ConfigError(
            "model.num_heads",
            f"head size {shape.head_dim} (hidden_size / num_heads) must be even for rotary "
            "embeddings",
        )
    return shape
