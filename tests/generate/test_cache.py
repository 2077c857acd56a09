"""Cached decoding gives the full forward pass's logits, for every topology kind."""

from __future__ import annotations

import pytest
import torch

from ancre.generate.cache import KVCache
from ancre.generate.decode import generate_tokens, left_padded
from ancre.generate.sampler import Sampling
from tests.helpers.conversions import KINDS, tiny_model

VOCAB = 97


def cached_and_full(model, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (3, 20, V) of 3 sequences decoded with the cache (a prompt of 7, then one
    token at a time) and of the full forward pass."""
    tokens = torch.randint(0, vocab, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(tokens)  # (B, T, V)
        cache = KVCache.for_model(model, 3, 20)
        chunks = [model.decode(tokens[:, :7], cache.advance(torch.ones(3, 7, dtype=torch.bool)),
                               cache.layers)]  # fmt: skip
        for t in range(7, 20):
            positions = cache.advance(torch.ones(3, 1, dtype=torch.bool))
            chunks.append(model.decode(tokens[:, t : t + 1], positions, cache.layers))
    return torch.cat(chunks, dim=1), full


@pytest.mark.parametrize("kind", KINDS)
def test_cached_decoding_equals_the_full_forward_at_every_position(kind):
    model, _ = tiny_model(kind, VOCAB)
    cached, full = cached_and_full(model, VOCAB)
    assert full.abs().max() > 0.1  # logits that differ between positions
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["ancre", "fixed"])
def test_a_left_padded_batch_gets_each_prompt_s_own_logits(kind):
    model, _ = tiny_model(kind, VOCAB)
    prompts = [[5, 9, 11, 2, 40, 41], [7, 8], [60, 61, 62, 63]]
    tokens, real = left_padded(prompts, torch.device("cpu"))
    with torch.no_grad():
        cache = KVCache.for_model(model, 3, tokens.shape[1])
        batched = model.decode(tokens, cache.advance(real), cache.layers)  # (B, T, V)
        for row, prompt in enumerate(prompts):
            alone = model(torch.tensor([prompt]))[0]  # (T_row, V)
            torch.testing.assert_close(batched[row, -len(prompt) :], alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_generation_with_the_cache_equals_generation_without(kind):
    model, _ = tiny_model(kind, VOCAB)
    prompts = [[5, 9, 11, 2, 40], [7, 8]]
    greedy = Sampling(temperature=0.0)
    cached = generate_tokens(model, prompts, 12, greedy)
    assert cached == generate_tokens(model, prompts, 12, greedy)  # deterministic
    assert cached == generate_tokens(model, prompts, 12, greedy, use_cache=False)
    assert [len(c) for c in cached] == [12, 12]


def test_sampling_is_reproducible_from_the_seed_and_stops_at_eos():
    model, _ = tiny_model("ancre", VOCAB)
    sampling = Sampling(temperature=1.5, top_k=20, top_p=0.95)

    def sample(seed: int, eos: int | None = None) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed)
        return generate_tokens(model, [[1, 2, 3], [4]], 16, sampling, eos, generator)

    first = sample(0)
    assert first == sample(0) and first != sample(1)
    eos = first[0][3]  # a token the first sequence produces at its 4th step
    stopped = sample(0, eos)
    assert stopped[0] == first[0][: first[0].index(eos)]
    assert eos not in stopped[1]


def test_prompt_and_new_tokens_past_max_seq_len_are_refused():
    model, _ = tiny_model("cascaded", VOCAB)
    with pytest.raises(ValueError, match="max_seq_len of 48"):
        generate_tokens(model, [[1] * 40], 9, Sampling(0.0))
