"""Configuration of an Ancre language model for transformers (travels with modeling_ancre.py).

An Ancre model is a Llama decoder whose blocks are wired by an L x (L+1) connection
matrix P: h_{j+1} = Block_j(h_j) + sum_{i<=j} P[j, i] h_i (the additive form; the
replace form subtracts the block's input h_j, the gated form scales the sum by a
learned g_j per block). This file and
modeling_ancre.py stand alone: they need torch and transformers only.
"""

from __future__ import annotations

from transformers import PretrainedConfig

TOPOLOGY_KINDS = (
    "cascaded",
    "ancre",
    "uniform",
    "fixed",
    "denseformer",
    "hyper",
    "mhc",
    "attnres",
)
TOPOLOGY_FORMS = ("additive", "replace", "gated")


class AncreLMConfig(PretrainedConfig):
    """The shape of the decoder and the kind of its topology.

    Attributes:
        vocab_size: Vocabulary size V.
        hidden_size: Width D of the residual stream.
        intermediate_size: Width of the SwiGLU hidden layer.
        num_hidden_layers: Number of decoder blocks L.
        num_attention_heads: Attention heads H (head size D / H).
        num_key_value_heads: Key and value heads G (grouped-query attention when G < H;
            None: H).
        max_position_embeddings: Longest sequence the rotary tables cover.
        rotary_base: Base of the rotary frequencies.
        rms_norm_eps: RMSNorm epsilon.
        initializer_range: Standard deviation of a fresh model's weights.
        topology_kind: cascaded (plain residual stream), ancre (learned softmax rows,
            the logits are the ``topology.logits`` weight), uniform (P[j, i] = 1/(j+1)) or
            fixed (the edges below).
        topology_form: additive (h_{j+1} = y_j + sum_i P[j, i] h_i), replace
            (h_{j+1} = y_j - h_j + sum_i P[j, i] h_i) or gated (h_{j+1} = y_j + g_j
            sum_i P[j, i] h_i; the g_j are the ``topology.gates`` weight).
        topology_temperature: Softmax temperature of the ancre rows.
        topology_edges: Fixed edges [i, j, w]: P[j-1, i] += w.
        topology_dwa_entries: DenseFormer: how many depth-weighted-average weights there
            are (the ``topology.alpha`` weight; ``topology.rows`` and ``topology.cols``
            say which (depth, source) pair each weighs).
        topology_streams: hyper and mhc: the number of residual streams n.
        topology_dynamic: hyper and mhc: the maps depend on the state.
        topology_sinkhorn_iters: mhc: Sinkhorn-Knopp iterations.
        topology_attnres_group: attnres: blocks whose updates are summed into one source
            (1: Full AttnRes).
    """

    model_type = "ancre"

    vocab_size: int = 32000
    hidden_size: int = 512
    intermediate_size: int = 1376
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int | None = None
    max_position_embeddings: int = 1024
    rotary_base: float = 10000.0
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    topology_kind: str = "ancre"
    topology_form: str = "additive"
    topology_temperature: float | None = 1.0
    topology_edges: list | None = None
    topology_dwa_entries: int | None = None
    topology_streams: int = 4
    topology_dynamic: bool = False
    topology_sinkhorn_iters: int = 20
    topology_attnres_group: int = 1
    use_cache: bool = True
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs) -> None:
        """Checks the topology kind and the heads against the width."""
        if self.topology_kind not in TOPOLOGY_KINDS:
            raise ValueError(f"topology_kind {self.topology_kind!r}; allowed: {TOPOLOGY_KINDS}")
        if self.topology_form not in TOPOLOGY_FORMS:
            raise ValueError(f"topology_form {self.topology_form!r}; allowed: {TOPOLOGY_FORMS}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"{self.num_attention_heads} heads do not divide hidden_size {self.hidden_size}"
            )
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"{self.num_key_value_heads} key/value heads do not divide "
                f"{self.num_attention_heads} attention heads"
            )
        super().__post_init__(**kwargs)
