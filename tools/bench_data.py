"""Throughput of the training data pipeline: read + tokenize + pack, per rank.

Runs the real loader (``ancre.data.loader.TrainLoader``) over a corpus for a fixed
time with 0 (in the trainer process), 1 and 2 DataLoader workers, and prints
documents/s and tokens/s of each, against the tokens/s one GPU consumes: a 1B model
at 45% MFU on an H200 needs about 0.45 x 790e12 / (6 x 1.3e9) = 45.6k tokens/s.

    python tools/bench_data.py --data data/sample --tokenizer runs/quickstart/tokenizer.model
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from ancre.config import DataConfig
from ancre.data.loader import TrainLoader
from ancre.data.sources import LocalShards, find_shards
from ancre.data.tokenizer import Tokenizer

GPU_TOKENS_PER_S = 0.45 * 790e12 / (6 * 1.3e9)


def tokens_per_document(config: DataConfig, tokenizer: Tokenizer, sample: int = 500) -> float:
    """Mean tokens (EOS included) of the first ``sample`` training documents."""
    source = LocalShards(find_shards(config.path, "train"), config.text_field, shuffle=False)
    documents = source.documents(None, Counter())
    lengths = [len(tokenizer.encode_one(next(documents)[0])) + 1 for _ in range(sample)]
    return sum(lengths) / len(lengths)


def measure(config: DataConfig, tokenizer: Tokenizer, batch: int, seconds: float) -> float:
    """Tokens/s of a loader over ``seconds`` (after its first batch, which starts workers)."""
    loader = TrainLoader(config, tokenizer, batch)
    next(loader)
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        inputs, _ = next(loader)
        count += inputs.numel()
    return count / elapsed


def main() -> None:
    """Parses the arguments, measures and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/sample")
    parser.add_argument("--tokenizer", required=True, help="a sentencepiece .model file")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32, help="sequences per batch")
    parser.add_argument("--seconds", type=float, default=5.0, help="per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    tokenizer = Tokenizer(args.tokenizer)
    base = DataConfig(path=args.data, seq_len=args.seq_len)
    per_doc = tokens_per_document(base, tokenizer)
    print(
        f"{args.data}: {per_doc:.0f} tokens per document, {tokenizer.vocab_size}-piece "
        f"tokenizer, seq_len {args.seq_len}, {args.seconds:.0f} s per setting"
    )
    print(f"{'workers':>7} {'docs/s':>10} {'tokens/s':>12} {'x 1B/H200 need':>15}")
    for workers in args.workers:
        config = DataConfig(path=args.data, seq_len=args.seq_len, num_workers=workers)
        rate = measure(config, tokenizer, args.batch, args.seconds)
        print(f"{workers:>7} {rate / per_doc:10.0f} {rate:12.0f} {rate / GPU_TOKENS_PER_S:14.1f}x")


if __name__ == "__main__":
    main()
