"""Choosing the next token from logits: greedy, or sampled with temperature, top-k, top-p."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen.

    Attributes:
        temperature: Divides the logits; 0 picks the most likely token (greedy).
        top_k: Sample among the k most likely tokens only; 0 keeps all.
        top_p: Sample among the most likely tokens whose probabilities add up to at
            least p (nucleus sampling); 1 keeps all.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature is {self.temperature}; it must be 0 (greedy) or more")
        if self.top_k < 0:
            raise ValueError(f"top_k is {self.top_k}; it must be 0 (all tokens) or more")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p is {self.top_p}; it must be in (0, 1]")


def next_tokens(
    logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The next token of each sequence.

    Args:
        logits: (B, V) logits of the last position.
        sampling: Greedy or sampling settings.
        generator: The random source of sampling (seeded by the caller).

    Returns:
        (B,) token ids.
    """
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)  # (B,)
    scores = logits.float() / sampling.temperature  # (B, V)
    if 0 < sampling.top_k < scores.shape[-1]:
        kth = scores.topk(sampling.top_k, dim=-1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1:
        ordered, order = scores.sort(dim=-1, descending=True)  # (B, V) each
        probs = ordered.softmax(dim=-1)  # (B, V), most likely first
        outside = probs.cumsum(dim=-1) - probs >= sampling.top_p  # (B, V): mass before it >= p
        drop = torch.zeros_like(outside).scatter(-1, order, outside)  # (B, V) in vocab order
        scores = scores.masked_fill(drop, float("-inf"))
    probs = scores.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
