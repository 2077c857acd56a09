"""The keys and values of every block for a batch of sequences being decoded.

Only attention reads other positions, so a decoding step computes the states h_0 .. h_L
of the new positions alone and keeps, per block, the keys and values of every position
so far (``Transformer.decode`` says why the topology's mix needs nothing more).

Prompts of different lengths share a batch by padding on the left: padded slots are
never read by any query, and each sequence's rotary positions count its own tokens
only, so every sequence gets the logits it would get alone.

Shapes: L blocks, B sequences, H heads, S slots (positions so far), K head size,
T new positions.
"""

from __future__ import annotations

import torch

from ancre.model import Transformer


class KVCache:
    """Preallocated keys and values of L blocks for B sequences of up to ``capacity`` slots.

    Attributes:
        capacity: Slots per sequence (prompt, padding included, plus new tokens).
        length: Slots filled so far.
        mask: (B, 1, T, S) booleans of the current step: the keys each new query reads.
    """

    def __init__(
        self, num_layers: int, batch_size: int, capacity: int, device: torch.device | str = "cpu"
    ) -> None:
        self.capacity = capacity
        self.length = 0
        self._start = 0
        self._keys: list[torch.Tensor | None] = [None] * num_layers  # (B, H, S_max, K) each
        self._values: list[torch.Tensor | None] = [None] * num_layers
        self._real = torch.zeros(batch_size, capacity, dtype=torch.bool, device=device)
        self._next = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.mask = torch.ones(batch_size, 1, 0, 0, dtype=torch.bool, device=device)
        self.layers = [LayerCache(self, j) for j in range(num_layers)]

    @classmethod
    def for_model(cls, model: Transformer, batch_size: int, capacity: int) -> KVCache:
        """An empty cache for a model's blocks, on the model's device.

        Raises:
            ValueError: ``capacity`` is past the model's longest sequence.
        """
        if capacity > model.shape.max_seq_len:
            raise ValueError(
                f"{capacity} positions (prompt and new tokens) do not fit in the model's "
                f"max_seq_len of {model.shape.max_seq_len}: shorten the prompt or ask for "
                "fewer new tokens"
            )
        return cls(len(model.blocks), batch_size, capacity, model.embed.weight.device)

    def advance(self, real: torch.Tensor) -> torch.Tensor:
        """Opens slots for T new positions; sets :attr:`mask` and returns their positions.

        Args:
            real: (B, T) booleans, False where a slot is padding.

        Returns:
            The rotary position of each new slot in its own sequence (B, T); padding
            takes its neighbour's position (it is never read).

        Raises:
            ValueError: The cache is full.
        """
        t = real.shape[1]
        start, end = self.length, self.length + t
        if end > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; {end} were asked for")
        self._real[:, start:end] = real
        counted = real.long().cumsum(dim=1)  # (B, T)
        positions = (self._next[:, None] + counted - 1).clamp(min=0)  # (B, T)
        self._next += counted[:, -1]
        slots = torch.arange(end, device=real.device)  # (S,)
        queries = torch.arange(start, end, device=real.device)  # (T,)
        causal = slots[None, :] <= queries[:, None]  # (T, S)
        mask = causal[None] & self._real[:, None, :end]  # (B, T, S)
        mask |= (slots[None, :] == queries[:, None])[None]  # padding reads itself: no empty row
        self.mask = mask[:, None]  # (B, 1, T, S)
        self._start, self.length = start, end
        return positions

    def store(self, j: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes block j's keys and values (B, H, T, K) of the open slots; returns all S."""
        keys, values = self._keys[j], self._values[j]
        if keys is None or values is None:
            b, h, _, d = k.shape
            keys = self._keys[j] = k.new_zeros(b, h, self.capacity, d)  # (B, H, S_max, K)
            values = self._values[j] = v.new_zeros(b, h, self.capacity, d)
        keys[:, :, self._start : self.length] = k
        values[:, :, self._start : self.length] = v
        return keys[:, :, : self.length], values[:, :, : self.length]  # (B, H, S, K) each


class LayerCache:
    """Block j's view of a :class:`KVCache` (``ancre.model.layers.KeyValueCache``)."""

    def __init__(self, cache: KVCache, j: int) -> None:
        self._cache = cache
        self._j = j

    @property
    def mask(self) -> torch.Tensor:
        """The (B, 1, T, S) keys each new query reads."""
        return self._cache.mask

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stores the new positions' keys and values; returns those of every position."""
        return self._cache.store(self._j, k, v)
