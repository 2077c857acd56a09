"""Tokens per second of ``ancre generate``'s decode loop with and without the KV cache.

For each preset, one randomly initialised Ancre model (same seed) generates greedily
from the same prompts, in turns: with the cache (the prompt once, then one position per
step) and without it (the whole sequences at every step). Each setting runs
``--repeats`` times, alternating, and the median is reported with the ratio
cached / uncached measured in this run. Only the decode loop is timed
(``ancre.generate.decode.generate_tokens``, what ``ancre generate`` runs after loading);
loading and tokenisation are not. Greedy decoding never stops early here (no EOS), so
both settings produce the same number of tokens, and the script checks that they
produce the same tokens.

    python tools/bench_generate.py --presets tiny 60m --prompt-len 32 --new-tokens 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ancre.config import load_config
from ancre.generate.decode import generate_tokens
from ancre.generate.sampler import Sampling
from ancre.model import Transformer, build_model
from ancre.train.threads import apply_cpu_threads


def build(preset: str, args: argparse.Namespace) -> Transformer:
    """A random Ancre model of the preset, long enough for prompt and new tokens."""
    torch.manual_seed(0)
    overrides = [
        f"model.preset={preset}", "topology.kind=ancre", "topology.backend=reference",
        f"data.seq_len={args.prompt_len + args.new_tokens}",
    ]  # fmt: skip
    return build_model(load_config(None, overrides), args.vocab_size).eval()


def timed(model: Transformer, prompts: list[list[int]], args, use_cache: bool):
    """(seconds, tokens) of one greedy generation."""
    started = time.perf_counter()
    new = generate_tokens(model, prompts, args.new_tokens, Sampling(0.0), use_cache=use_cache)
    return time.perf_counter() - started, new


def main() -> None:
    """Parses the arguments, runs the measurements and prints one line per setting."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "60m"])
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1, help="prompts generated together")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=0,
        help="torch CPU threads (0: the free cores, as training chooses them)",
    )  # fmt: skip
    args = parser.parse_args()
    if (threads := apply_cpu_threads(args.threads, torch.device("cpu"))) is not None:
        print(threads)
    generator = torch.Generator().manual_seed(1)
    print(
        f"greedy, batch {args.batch}, prompt {args.prompt_len} tokens, {args.new_tokens} new "
        f"tokens per prompt, vocabulary {args.vocab_size}, CPU; median of {args.repeats}"
    )
    for preset in args.presets:
        model = build(preset, args)
        prompts = torch.randint(
            0, args.vocab_size, (args.batch, args.prompt_len), generator=generator
        ).tolist()
        seconds: dict[bool, list[float]] = {True: [], False: []}
        outputs = {}
        for _ in range(args.repeats):
            for use_cache in (True, False):
                elapsed, outputs[use_cache] = timed(model, prompts, args, use_cache)
                seconds[use_cache].append(elapsed)
        if outputs[True] != outputs[False]:
            raise SystemExit(f"{preset}: cached and uncached generation differ")
        tokens = args.batch * args.new_tokens
        rates = {c: tokens / statistics.median(s) for c, s in seconds.items()}
        for use_cache in (True, False):
            label = "KV cache" if use_cache else "no cache"
            print(f"{preset:>5} {label:<9} {rates[use_cache]:9.1f} tokens/s")
        print(f"{preset:>5} cache / no cache: {rates[True] / rates[False]:.2f}x")


if __name__ == "__main__":
    main()
