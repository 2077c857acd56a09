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
        vocab_size: Vocabulary size V.
        max_seq_len: Longest sequence the rotary tables cover.
        rope_theta: Base of the rotary frequencies.
        norm_eps: RMSNorm epsilon.
        init_std: Standard deviation of the weight initialisation.
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

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.hidden_size // self.num_heads


# name -> (hidden_size, intermediate_size, num_heads, num_layers)
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (128, 352, 4, 6),
    "60m": (512, 1376, 8, 8),
    "130m": (768, 2048, 12, 12),
    "350m": (1024, 2736, 16, 24),
    "1b": (2048, 5461, 32, 24),
    "7b": (4096, 11008, 32, 32),
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
    if model.preset is not None:
        hidden, inter, heads, layers = PRESETS[model.preset]
    else:
        hidden = inter = heads = layers = 0  # validate() guarantees every field is set
    shape = ModelShape(
        hidden_size=model.hidden_size or hidden,
        intermediate_size=model.intermediate_size or inter,
        num_layers=model.num_layers or layers,
        num_heads=model.num_heads or heads,
        vocab_size=model.vocab_size or vocab_size,
        max_seq_len=model.max_seq_len or seq_len,
        rope_theta=model.rope_theta,
        norm_eps=model.norm_eps,
        init_std=model.init_std,
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
    if shape.head_dim % 2:
        raise ConfigError(
            "model.num_heads",
            f"head size {shape.head_dim} (hidden_size / num_heads) must be even for rotary "
            "embeddings",
        )
    return shape
