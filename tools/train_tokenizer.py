"""Trains a tokenizer on C4-format shards: a sentencepiece model or a byte-level BPE.

Reads the training shards of ``--data`` (a folder, glob or file), in an order shuffled
from ``--seed``, up to ``--max-chars`` characters, and trains a sentencepiece unigram or
BPE model with byte fallback and no normalisation (text round-trips exactly), or a
byte-level BPE of the Hugging Face tokenizers library (``--model-type byte_bpe``, written
as its tokenizer.json, with ``<|endoftext|>``). The same data, seed and settings
(``--threads`` included) give the same file, byte for byte.

    python tools/train_tokenizer.py --data data/c4/en --out spiece.model --vocab-size 32000
    python tools/train_tokenizer.py --data data/c4/en --out tokenizer.json --model-type byte_bpe
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from pathlib import Path

from ancre.data.sources import SKIP_REASONS, find_shards, iter_documents
from ancre.data.tokenizer import train_tokenizer


def main() -> None:
    """Parses the arguments, trains, and prints what was made."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder, glob or file of shards")
    parser.add_argument("--out", required=True, type=Path, help="the tokenizer file to write")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--model-type", choices=("unigram", "bpe", "byte_bpe"), default="unigram")
    parser.add_argument("--max-chars", type=int, default=200_000_000, help="text to read")
    parser.add_argument("--seed", type=int, default=0, help="shard order to read in")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--threads", type=int, default=1, help="sentencepiece threads")
    args = parser.parse_args()

    shards = find_shards(args.data, "train")
    random.Random(args.seed).shuffle(shards)
    skipped: Counter[str] = Counter()
    read = 0

    def texts():
        nonlocal read
        for text in iter_documents(shards, args.text_field, skipped):
            read += len(text)
            yield text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tokenizer = train_tokenizer(
        texts(), args.out, args.vocab_size, args.model_type, args.max_chars, args.threads
    )
    elapsed = time.perf_counter() - started
    skips = ", ".join(f"{r} {skipped[r]}" for r in SKIP_REASONS if skipped[r]) or "none"
    print(
        f"{args.out}: {args.model_type}, {tokenizer.vocab_size} pieces, trained on "
        f"{read / 1e6:.1f} M characters from {len(shards)} shard(s) in {elapsed:.1f} s "
        f"(skipped lines: {skips})"
    )


if __name__ == "__main__":
    main()
