"""The decode loop: prompts in, new tokens out, with or without the KV cache.

With the cache, the prompts run through the model once and every later step runs the
one new token per sequence; without it every step runs the whole sequences again
(the reference the cache is checked and timed against).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ancre.data.tokenizer import Tokenizer
from ancre.generate.cache import KVCache
from ancre.generate.sampler import Sampling, next_tokens
from ancre.model import Transformer

OnTokens = Callable[[list[list[int]]], "Sequence[bool] | None"]
"""Called after every step with each sequence's new tokens so far; may return, for each
sequence, whether it is finished (a stop string appeared)."""


def completion_text(tokenizer: Tokenizer, prompt: Sequence[int], new: Sequence[int]) -> str:
    """The text the new tokens add to the prompt's.

    Decoded together with the prompt: a piece's leading space survives only inside a
    sequence (sentencepiece drops it at the start of a text).
    """
    before = tokenizer.decode(prompt)
    after = tokenizer.decode([*prompt, *new])
    return after[len(before) :] if after.startswith(before) else tokenizer.decode(new)


def left_padded(
    prompts: Sequence[Sequence[int]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts as (B, T) tokens padded on the left, and (B, T) booleans: not padding.

    Raises:
        ValueError: A prompt is empty.
    """
    if any(len(p) == 0 for p in prompts):
        raise ValueError("a prompt has no tokens; give at least one (e.g. the EOS token)")
    width = max(len(p) for p in prompts)
    tokens = torch.zeros(len(prompts), width, dtype=torch.long, device=device)  # (B, T)
    real = torch.zeros(len(prompts), width, dtype=torch.bool, device=device)  # (B, T)
    for row, prompt in enumerate(prompts):
        tokens[row, width - len(prompt) :] = torch.tensor(list(prompt), device=device)
        real[row, width - len(prompt) :] = True
    return tokens, real


@torch.no_grad()
def generate_tokens(
    model: Transformer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    sampling: Sampling,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    on_tokens: OnTokens | None = None,
) -> list[list[int]]:
    """Continues each prompt by up to ``max_new_tokens`` tokens, stopping at EOS.

    Args:
        model: The model, in eval mode.
        prompts: Token ids of each prompt (a batch; lengths may differ).
        max_new_tokens: Most tokens added to each prompt.
        sampling: Greedy or sampling settings.
        eos_id: A sequence that produces this token stops (the token is not returned).
        generator: The random source of sampling.
        use_cache: Keep keys and values (one new position per step) instead of running
            the whole sequences at every step.
        on_tokens: Called after each step with the new tokens so far of every sequence;
            the sequences it returns True for stop.

    Returns:
        The new tokens of each prompt.

    Raises:
        ValueError: A prompt is empty, or prompt and new tokens exceed max_seq_len.
    """
    device = model.embed.weight.device
    tokens, real = left_padded(prompts, device)  # (B, T) each
    batch = tokens.shape[0]
    capacity = tokens.shape[1] + max_new_tokens
    cache = KVCache.for_model(model, batch, capacity)  # also checks max_seq_len
    new: list[list[int]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)  # (B,)
    step_tokens, step_real = tokens, real
    for _ in range(max_new_tokens):
        if not use_cache:  # the whole sequences again, through a fresh cache
            cache = KVCache.for_model(model, batch, capacity)
            step_tokens, step_real = tokens, real
        positions = cache.advance(step_real)  # (B, T)
        logits = model.decode(step_tokens, positions, cache.layers)[:, -1]  # (B, V)
        chosen = next_tokens(logits, sampling, generator)  # (B,)
        for row, token in enumerate(chosen.tolist()):
            if not done[row] and token != eos_id:
                new[row].append(token)
        if eos_id is not None:
            done |= chosen == eos_id
        if on_tokens is not None and (finished := on_tokens(new)) is not None:
            done |= torch.tensor(list(finished), dtype=torch.bool, device=device)
        if bool(done.all()):
            break
        step_tokens = chosen[:, None]  # (B, 1)
        step_real = torch.ones_like(step_tokens, dtype=torch.bool)
        tokens = torch.cat([tokens, step_tokens], dim=1)  # (B, T + 1)
        real = torch.cat([real, step_real], dim=1)
    return new
