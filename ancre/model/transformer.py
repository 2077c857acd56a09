"""The Llama decoder: embed -> blocks wired by a topology -> norm -> head -> loss.

Shapes: B batch, T sequence, D hidden size, V vocabulary.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ancre.config import AncreConfig
from ancre.kernels.attention import Attention, sdpa_attention, select_attention
from ancre.model.block import DecoderBlock
from ancre.model.depth_stats import DepthRecorder
from ancre.model.documents import DocumentMasking, document_layout, within_documents
from ancre.model.laurel import LaurelResidual
from ancre.model.layers import KeyValueCache, RMSNorm, RotaryEmbedding
from ancre.model.losses import cross_entropy
from ancre.model.presets import ModelShape, resolve_shape
from ancre.model.topology import Topology
from ancre.model.topology.kinds import build_topology
from ancre.model.value_residual import FirstValues

logger = logging.getLogger(__name__)


class Transformer(nn.Module):
    """A Llama-style decoder whose residual wiring between blocks is a topology.

    Attributes:
        shape: The numbers the model was built from.
        recompute: Indices of the blocks whose internals are recomputed in the backward
            pass (activation checkpointing); their inputs, the states the topology
            mixes, are kept.
        documents: Set with ``data.packing: docs_masked``: the windows' documents are
            read apart (``ancre.model.documents``), else None.
    """

    def __init__(
        self,
        shape: ModelShape,
        topology: Topology,
        attend: Attention = sdpa_attention,
        recompute: frozenset[int] = frozenset(),
        documents: DocumentMasking | None = None,
    ) -> None:
        super().__init__()
        self.recompute = recompute
        self.documents = documents
        if topology.num_layers != shape.num_layers:
            raise ValueError(
                f"topology wires {topology.num_layers} blocks, model has {shape.num_layers}"
            )
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab_size, shape.hidden_size)
        self.rope = RotaryEmbedding(shape.head_dim, shape.max_seq_len, shape.rope_theta)
        self.blocks = nn.ModuleList(
            DecoderBlock(shape, attend, index, topology.MULTIWAY)
            for index in range(shape.num_layers)
        )  # fmt: skip
        self.topology = topology
        self.norm = RMSNorm(shape.hidden_size, shape.norm_eps)
        self.head = nn.Linear(shape.hidden_size, shape.vocab_size, bias=False)
        self.depth_recorder: DepthRecorder | None = None
        """Set by ``ancre.model.depth_stats.recording``: records each block's input and update."""

    def init_weights(self) -> None:
        """Draws every weight matrix from the current RNG state (``model.init``).

        Apart from construction, so that a model can be built with its parameters
        partitioned as they are made (ZeRO-3's ``deepspeed.zero.Init``, which gathers
        each module's parameters around ``Module.apply``) and initialised afterwards, with
        the same draws in the same order as on one device. The topology's parameters are
        constants of its construction, but for those a kind draws after every other
        weight (a ``draw_parameters`` method of its modules: MUDD's weight MLPs), so the
        blocks start as the plain model's of the same seed. LAuReL's maps (``model.laurel``)
        draw A and start B at zero, so the block starts plain.

        ``normal``: every Linear and Embedding weight from N(0, init_std).
        ``depth_scaled``: then wo and down, the two projections that write into the
        residual stream in each block, again from N(0, init_std / sqrt(2 L)), as in
        GPT-2 and Megatron, so that the plain stream's variance does not grow with depth.
        """
        self.apply(self._init_module)
        if self.shape.init == "depth_scaled":
            scaled = {id(m) for b in self.blocks for m in (b.attn.wo, b.mlp.down)}
            std = self.shape.init_std / math.sqrt(2 * self.shape.num_layers)
            self.apply(lambda m: nn.init.normal_(m.weight, 0.0, std) if id(m) in scaled else None)
        self.topology.apply(_draw_parameters)

    def _init_module(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.shape.init_std)
        elif isinstance(module, LaurelResidual):  # A drawn, B zero, a = b = 1
            module.reset_parameters(self.shape.init_std)

    def stream_inputs(self, tokens: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """h_0 and the arguments every block takes.

        Returns:
            The embeddings (B, T, D), in the autocast dtype under autocast, and the
            blocks' arguments (the rotary tables; the documents when masked).
        """
        h = self.embed(tokens)  # (B, T, D)
        device = h.device.type
        if torch.is_autocast_enabled(device):
            h = h.to(torch.get_autocast_dtype(device))
        rope = self.rope(tokens.shape[1])  # 2 x (T, D/H/2)
        block_args: tuple = (rope,)
        if self.documents is not None:  # attention within each document of the windows
            documents, positions = document_layout(tokens, self.documents)
            if positions is not None:
                rope = self.rope.at(positions)  # 2 x (B, 1, T, D/H/2)
            block_args = (rope, documents)
        return h, block_args

    def hidden_states(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Returns the L+1 states [h_0 (embeddings), ..., h_L], each (B, T, D).

        Under autocast the residual stream runs in the autocast dtype, while the
        weights (the fp32 master copy) and the topology logits stay fp32.
        """
        h, block_args = self.stream_inputs(tokens)
        recorder = self.depth_recorder
        if recorder is None:
            return self.topology(self._runners(self.first_values()), h, *block_args)
        recorder.embeddings = h.detach()
        runners = [recorder.wrap(run) for run in self._runners(self.first_values())]
        states = self.topology(runners, h, *block_args)
        recorder.final = states[-1].detach()
        return states

    def first_values(self) -> FirstValues | None:
        """A new carrier of the first block's values for one pass, or None.

        None without value residual learning (``model.value_residual``).
        """
        return FirstValues() if self.shape.value_residual else None

    def _runners(self, first: FirstValues | None) -> list[Callable[..., torch.Tensor]]:
        """The blocks as the topology calls them, recomputed ones through checkpoint()."""
        return [
            functools.partial(checkpoint, block, use_reentrant=False, first_values=first)
            if j in self.recompute and self.training and torch.is_grad_enabled()
            else functools.partial(block, first_values=first)
            for j, block in enumerate(self.blocks)
        ]

    def forward(
        self, tokens: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"
    ) -> torch.Tensor:
        """Computes logits, or the cross-entropy against targets.

        Args:
            tokens: Input token ids (B, T).
            targets: Next-token ids (B, T); -100 (PyTorch's default ignore_index, which
                ``ancre.data.loader.IGNORE_INDEX`` names) marks positions left out.
            reduction: ``mean`` over counted positions, or ``sum``.

        Returns:
            Logits (B, T, V) without targets; the loss (scalar, fp32 or wider) with them.
        """
        h = self.hidden_states(tokens)[-1]  # (B, T, D)
        logits = self.head(self.norm(h))  # (B, T, V)
        if targets is None:
            return logits
        if self.documents is not None:  # no prediction across a document boundary
            targets = within_documents(tokens, targets, self.documents)
        return cross_entropy(logits, targets, reduction)

    def decode(
        self, tokens: torch.Tensor, positions: torch.Tensor, caches: Sequence[KeyValueCache]
    ) -> torch.Tensor:
        """Logits of new positions, given the cached keys and values of the earlier ones.

        The topology needs no cache of its own: it mixes the states h_0 .. h_j of the
        *same* position (h_{j+1}[t] = y_j[t] + sum_i P[j, i] h_i[t]), so the states of
        the new positions are computed from h_0 to h_L here and those of earlier
        positions are never read again. Only attention reads other positions, through
        each block's keys and values, which the caches hold.

        Args:
            tokens: The new token ids (B, T).
            positions: Their rotary positions (B, T) in their own sequences.
            caches: One cache per block; each gains the new positions' keys and values.

        Returns:
            Logits (B, T, V), equal to those of :meth:`forward` over the whole sequences.
        """
        if len(caches) != len(self.blocks):
            raise ValueError(f"{len(self.blocks)} blocks need as many caches, got {len(caches)}")
        h = self.embed(tokens)  # (B, T, D)
        device = h.device.type
        if torch.is_autocast_enabled(device):
            h = h.to(torch.get_autocast_dtype(device))
        rope = self.rope.at(positions)  # 2 x (B, 1, T, D/H/2)
        first = self.first_values()  # V_1 of the new positions
        runners = [
            functools.partial(block, cache=cache, first_values=first)
            for block, cache in zip(self.blocks, caches, strict=True)
        ]
        h = self.topology(runners, h, rope)[-1]  # (B, T, D)
        return self.head(self.norm(h))  # (B, T, V)

    def num_parameters(self) -> int:
        """Number of parameters, topology logits included (whole, also when partitioned)."""
        return sum(whole_numel(p) for p in self.parameters())


def build_model(config: AncreConfig, vocab_size: int, eos_id: int | None = None) -> Transformer:
    """Builds the decoder and its topology from a config.

    Reads ``model``, ``topology`` and ``data.seq_len`` only; how training executes
    the blocks (recompute, compile) is applied afterwards by ``ancre.train``. Logs the
    attention and mix implementations chosen.

    Args:
        config: A validated config.
        vocab_size: The tokenizer's vocabulary size.
        eos_id: The tokenizer's EOS id: with ``data.packing: docs_masked`` the model reads
            each document of its windows apart (training and validation). None builds it
            for single documents (generation, export).

    Returns:
        The model, initialised (:meth:`Transformer.init_weights`) from the caller's RNG
        state (``run.seed``).

    Raises:
        ConfigError: The model section and the tokenizer do not fit together.
        ValueError: An attention or mix backend was asked for where it cannot run.
    """
    shape = resolve_shape(config.model, vocab_size, config.data.seq_len)
    attention, attend = select_attention(config.model.attention)
    topology = build_topology(config.topology, shape.num_layers, shape.hidden_size, shape.norm_eps)
    logger.info(
        "attention: %s (model.attention=%s); topology %s over %d blocks, mix: %s "
        "(topology.backend=%s)",
        attention, config.model.attention, config.topology.kind, shape.num_layers,
        topology.mix_backend, config.topology.backend,
    )  # fmt: skip
    documents = None
    if config.data.packing == "docs_masked" and eos_id is not None:
        documents = DocumentMasking(eos_id, config.data.restart_positions)
    model = Transformer(shape, topology, attend, documents=documents)
    model.init_weights()
    return model


def _draw_parameters(module: nn.Module) -> None:
    """Calls a topology module's ``draw_parameters``, if it has one.

    Through ``Module.apply``, which ZeRO-3 wraps to gather each module's own parameters
    around the call.
    """
    draw = getattr(module, "draw_parameters", None)
    if callable(draw):
        draw()


def whole_numel(parameter: torch.Tensor) -> int:
    """A parameter's number of elements, whole (ZeRO-3 keeps its count as ``ds_numel``)."""
    return int(getattr(parameter, "ds_numel", parameter.numel()))


def check_buildable(config: AncreConfig) -> None:
    """Checks, without building the model, what :func:`build_model` would refuse.

    The shape (heads against width), the attention and mix backends and the topology
    (edges of a fixed one) are checked; the vocabulary against the tokenizer's is
    checked when the model is built.

    Raises:
        ConfigError: A model or topology key the shape does not allow.
        ValueError: An attention or mix backend asked for where it cannot run, or
            edges that do not parse.
    """
    shape = resolve_shape(config.model, config.model.vocab_size or 2, config.data.seq_len)
    select_attention(config.model.attention)
    build_topology(config.topology, shape.num_layers, shape.hidden_size, shape.norm_eps)
