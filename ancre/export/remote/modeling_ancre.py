"""An Ancre language model for transformers: Llama blocks wired by a connection matrix.

Block j reads h_j and the topology adds a weighted sum of every earlier state::

    h_{j+1} = Block_j(h_j) + sum_{i<=j} P[j, i] * h_i

with P the L x (L+1) connection matrix (``configuration_ancre.AncreLMConfig`` names its
kind). The mix reads states of the same position only, so generation caches each
block's keys and values as in any decoder and nothing more. Parameter names match the
exporting framework's, and every operation runs as it does there (RMSNorm and the mix
accumulate in fp32), so the logits agree with it.

Shapes: B batch, T new positions, S positions with the cached ones, D hidden size,
H heads, K head size, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_ancre import AncreLMConfig
from .zoo_ancre import DepthAttention, Streams

CACHE_FIELD = (
    "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
)
"""What this transformers version calls the cache in model outputs."""


def wide(dtype: torch.dtype) -> torch.dtype:
    """The dtype to accumulate in: at least fp32."""
    return torch.promote_types(dtype, torch.float32)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned gain, computed in at least fp32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalises the last dimension; returns x's dtype."""
        w = x.to(wide(x.dtype))  # (B, T, D)
        normed = w * torch.rsqrt(w.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight.to(x.dtype)


def rotary_tables(
    positions: torch.Tensor, head_dim: int, base: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, T, K/2) cos and sin of each sequence's positions (B, T)."""
    inv_freq = 1.0 / base ** (
        torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim
    )
    angles = positions.float()[..., None] * inv_freq  # (B, T, K/2)
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates pairs (x[..., :K/2], x[..., K/2:]) of a (B, H, T, K) tensor by position."""
    x1, x2 = x.to(wide(x.dtype)).chunk(2, dim=-1)  # (B, H, T, K/2) each
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


class Attention(nn.Module):
    """Causal self-attention with rotary embeddings and a KV cache.

    Grouped-query when there are fewer key/value heads: each serves consecutive query heads.
    """

    def __init__(self, config: AncreLMConfig, layer_idx: int) -> None:
        super().__init__()
        d = config.hidden_size
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads or self.num_heads
        self.head_dim = d // self.num_heads
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(d, d, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: Cache | None,
    ) -> torch.Tensor:
        """Attends the new positions to the earlier ones (``mask`` None: plain causal)."""
        b, t, d = x.shape
        q = self.wq(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, K)
        k = self.wk(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, T, K)
        v = self.wv(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, T, K)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, G, S, K) each
        group = self.num_heads // self.num_kv_heads
        if group > 1:
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, K)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, K)
        return self.wo(out.transpose(1, 2).reshape(b, t, d))  # (B, T, D)


class SwiGLU(nn.Module):
    """The Llama MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: AncreLMConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """A pre-norm Llama block: ``x + Attn(norm x)``, then ``+ MLP(norm .)``."""

    def __init__(self, config: AncreLMConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = Attention(config, layer_idx)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, rope, mask, cache) -> torch.Tensor:
        """The block's output y (B, T, D) for its input state x (B, T, D)."""
        x = x + self.attn(self.attn_norm(x), rope, mask, cache)  # (B, T, D)
        return x + self.mlp(self.mlp_norm(x))  # (B, T, D)


class Topology(nn.Module):
    """The connection matrix P (L, L+1) of the configured kind, always in fp32."""

    def __init__(self, config: AncreLMConfig) -> None:
        super().__init__()
        self.kind = config.topology_kind
        self.num_layers = n = config.num_hidden_layers
        self.temperature = config.topology_temperature
        self.edges = [tuple(edge) for edge in config.topology_edges or []]
        self.form = getattr(config, "topology_form", "additive")
        if self.kind == "ancre":  # theta_1 .. theta_{L-1} row after row; theta_0 is 0
            self.logits = nn.Parameter(torch.zeros(n * (n + 1) // 2 - 1, dtype=torch.float32))
        if self.form == "gated" and self.kind != "cascaded":  # g_j, one per block
            self.gates = nn.Parameter(torch.zeros(n, dtype=torch.float32))
        if self.kind == "denseformer":  # alpha_{i,k} at (rows, cols): h_i = sum_k R[i, k] x_k
            entries = config.topology_dwa_entries
            self.alpha = nn.Parameter(torch.zeros(entries, dtype=torch.float32))
            self.register_buffer("rows", torch.zeros(entries, dtype=torch.long))
            self.register_buffer("cols", torch.zeros(entries, dtype=torch.long))

    def reads(self, device: torch.device) -> torch.Tensor:
        """DenseFormer's R (L+1, L+1) in fp32.

        The identity at the depths without an average, alpha at its (depth, source) pairs.
        """
        n = self.num_layers
        averaged = torch.zeros(n + 1, dtype=torch.bool, device=device)
        averaged[self.rows.to(device)] = True
        reads = torch.diag((~averaged).float())  # (L+1, L+1)
        alpha = self.alpha.to(device, torch.float32)
        return reads.index_put((self.rows.to(device), self.cols.to(device)), alpha, accumulate=True)

    def weights(self, device: torch.device) -> torch.Tensor | None:
        """The mix weights W (L, L+1) in fp32, or None for the cascaded stack (no mix).

        h_{j+1} = y_j + sum_i W[j, i] h_i: W = P (additive), P - E with E[j, j] = 1
        (replace) or g_j P[j] (gated).
        """
        matrix = self.matrix(device)
        if matrix is None or self.form == "additive":
            return matrix
        if self.form == "replace":
            return matrix - torch.eye(self.num_layers, self.num_layers + 1, device=device)
        return self.gates.to(device, torch.float32).unsqueeze(1) * matrix  # (L, L+1)

    def matrix(self, device: torch.device) -> torch.Tensor | None:
        """P (L, L+1) in fp32, or None for the cascaded stack (no mix)."""
        n = self.num_layers
        if self.kind == "ancre":
            logits = self.logits.to(wide(self.logits.dtype))
            logits = torch.cat([logits.new_zeros(1), logits])  # (L(L+1)/2,)
            rows, cols = torch.tril_indices(n, n + 1, device=logits.device)
            scores = logits.new_full((n, n + 1), float("-inf"))
            scores = scores.index_put((rows, cols), logits)  # (L, L+1)
            return torch.softmax(scores / self.temperature, dim=-1)
        if self.kind == "uniform":
            counts = torch.arange(1, n + 1, dtype=torch.float32, device=device).unsqueeze(1)
            return torch.ones(n, n + 1, device=device).tril() / counts  # (L, L+1)
        if self.kind == "fixed":
            matrix = torch.zeros(n, n + 1)  # (L, L+1)
            for source, target, weight in self.edges:
                matrix[int(target) - 1, int(source)] += float(weight)
            return matrix.to(device)
        return None

    @staticmethod
    def mix(y: torch.Tensor, states: list[torch.Tensor], row: torch.Tensor) -> torch.Tensor:
        """Returns y + sum_i row[i] * states[i], accumulated in fp32, in y's dtype."""
        acc = wide(y.dtype)
        out = y.to(acc)  # (B, T, D)
        for weight, state in zip(row.to(acc).unbind(0), states, strict=True):
            out = out + weight * state.to(acc)  # (B, T, D)
        return out.to(y.dtype)


class AncreForCausalLM(PreTrainedModel, GenerationMixin):
    """The decoder: embed -> blocks wired by the topology -> norm -> head."""

    config_class = AncreLMConfig
    base_model_prefix = "ancre"
    supports_gradient_checkpointing = False
    _no_split_modules = ["Block"]
    _supports_sdpa = True

    def __init__(self, config: AncreLMConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(Block(config, j) for j in range(config.num_hidden_layers))
        kind = config.topology_kind
        if kind in ("hyper", "mhc"):
            self.topology = Streams(config, kind)
        elif kind == "attnres":
            self.topology = DepthAttention(config)
        else:
            self.topology = Topology(config)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """A fresh model's weights (loading a folder overwrites them all)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, Topology) and module.kind == "ancre":
            nn.init.zeros_(module.logits)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding."""
        return self.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        """Replaces the token embedding."""
        self.embed = value

    def get_output_embeddings(self) -> nn.Linear:
        """The output head."""
        return self.head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        """Replaces the output head."""
        self.head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits of the new positions (and the loss against ``labels``, shifted inside).

        Args:
            input_ids: New token ids (B, T).
            attention_mask: (B, S) ones for tokens, zeros for padding, cached positions
                included; left padding is supported.
            position_ids: (B, T) rotary positions; derived from the mask when absent.
            cache: Keys and values of earlier positions (``past_key_values`` in older
                transformers versions).
            past_key_values: The same, by its older name.
            inputs_embeds: (B, T, D) embeddings instead of ``input_ids``.
            labels: (B, T) targets, -100 where ignored.
            use_cache: Return a cache (one is made when none is given).
            logits_to_keep: Compute the logits of the last this many positions only (0: all).
            **kwargs: Ignored generation arguments.
        """
        cache = cache if cache is not None else past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        h = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, D)
        b, t = h.shape[:2]
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = self._positions(attention_mask, b, t, past, h.device)
        rope = rotary_tables(
            position_ids,
            self.config.hidden_size // self.config.num_attention_heads,
            self.config.rotary_base,
        )
        mask = self._mask(attention_mask, b, t, past, h.device)
        if isinstance(self.topology, (Streams, DepthAttention)):
            h = self.topology.run(h, self.blocks, rope, mask, cache)
        elif self.topology.kind == "denseformer":
            h = self._averaged(h, rope, mask, cache)
        else:
            weights = self.topology.weights(h.device)  # (L, L+1) or None
            states = [h]
            for j, block in enumerate(self.blocks):
                y = block(states[-1], rope, mask, cache)  # (B, T, D)
                row = None if weights is None else weights[j, : j + 1]
                states.append(y if row is None else Topology.mix(y, states, row))
            h = states[-1]
        if logits_to_keep:
            h = h[:, -logits_to_keep:]
        logits = self.head(self.norm(h))  # (B, T, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100
            )
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, **{CACHE_FIELD: cache if use_cache else None}
        )

    def _averaged(self, h: torch.Tensor, rope, mask, cache) -> torch.Tensor:
        """DenseFormer's forward: block j reads h_j = sum_k R[j, k] x_k.

        Over the embeddings x_0 and the block outputs x_{k+1}; the final norm reads h_L.
        Accumulated in fp32.
        """
        reads = self.topology.reads(h.device)  # (L+1, L+1)
        outputs, read = [h], h  # x_0 .. x_j; h_0 = x_0
        for j, block in enumerate(self.blocks):
            outputs.append(block(read, rope, mask, cache))  # x_{j+1} (B, T, D)
            acc = wide(h.dtype)
            total = torch.zeros_like(outputs[0], dtype=acc)
            for k, x in enumerate(outputs):
                total = total + reads[j + 1, k].to(acc) * x.to(acc)
            read = total.to(h.dtype)  # h_{j+1}
        return read

    @staticmethod
    def _positions(
        attention_mask: torch.Tensor | None, b: int, t: int, past: int, device: torch.device
    ) -> torch.Tensor:
        """Each new position's rotary position (B, T), counting only real tokens."""
        if attention_mask is None:
            return torch.arange(past, past + t, device=device).expand(b, t)
        counted = attention_mask.long().cumsum(dim=-1) - 1  # (B, S)
        return counted[:, -t:].clamp(min=0)

    @staticmethod
    def _mask(
        attention_mask: torch.Tensor | None, b: int, t: int, past: int, device: torch.device
    ) -> torch.Tensor | None:
        """(B, 1, T, S) keys each query reads; None for plain causal attention."""
        if past == 0 and (attention_mask is None or bool(attention_mask.all())):
            return None
        if attention_mask is None:
            attention_mask = torch.ones(b, past + t, dtype=torch.bool, device=device)
        real = attention_mask.bool()[:, -(past + t) :]  # (B, S)
        slots = torch.arange(past + t, device=device)  # (S,)
        queries = torch.arange(past, past + t, device=device)  # (T,)
        causal = slots[None, :] <= queries[:, None]  # (T, S)
        mask = causal[None] & real[:, None, :]  # (B, T, S)
        mask |= (slots[None, :] == queries[:, None])[None]  # padding reads itself: no empty row
        return mask[:, None]
