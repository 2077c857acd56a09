"""``ancre generate``: text from a checkpoint or a conversion, streamed as it is produced."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import torch

from ancre.checkpoint import CheckpointError
from ancre.config import ConfigError
from ancre.data.tokenizer import Tokenizer
from ancre.generate.decode import completion_text, generate_tokens
from ancre.generate.sampler import Sampling
from ancre.run_folder import checkpoint_of
from ancre.train.trained import load_trained

EXIT_BAD_INPUT = 2
REPLACEMENT = "\ufffd"
"""What sentencepiece decodes an incomplete UTF-8 byte sequence to: held back when streaming."""


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declares the arguments of ``ancre generate``."""
    parser.add_argument(
        "source",
        type=Path,
        help="a checkpoint folder (any ZeRO stage), checkpoints/latest, a run folder (its "
        "newest checkpoint) or an ancre convert folder",
    )
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", help="the text to continue (streamed as it is produced)")
    prompts.add_argument(
        "--prompts", type=Path, help="a text file, one prompt per line, continued in one batch"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="0 picks the most likely token (greedy)"
    )
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k most likely")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    parser.add_argument(
        "--no-cache", action="store_true", help="run the whole sequences at every step"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def encode_prompt(tokenizer: Tokenizer, text: str) -> list[int]:
    """A prompt's token ids as training saw text (no BOS); an empty prompt is the EOS token.

    The EOS token is what training put between documents, so a model continuing it
    starts a new document.
    """
    return tokenizer.encode_one(text) or [tokenizer.eos_id]


class Stream:
    """Writes the text of one sequence's new tokens as they come."""

    def __init__(self, tokenizer: Tokenizer, prompt: Sequence[int], out: TextIO) -> None:
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.out = out
        self.shown = ""

    def __call__(self, new: Sequence[Sequence[int]]) -> None:
        """Prints what was decoded since the last call (an unfinished character waits)."""
        text = completion_text(self.tokenizer, self.prompt, new[0])
        if text.endswith(REPLACEMENT) or not text.startswith(self.shown):
            return
        self.out.write(text[len(self.shown) :])
        self.out.flush()
        self.shown = text


def run(command: str, args: argparse.Namespace) -> int:
    """Generates text; bad input ends with a message and exit code 2."""
    try:
        sampling = Sampling(args.temperature, args.top_k, args.top_p)
        if args.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens is {args.max_new_tokens}; it must be 1 or more")
        texts = [args.prompt] if args.prompt is not None else _read_prompts(args.prompts)
        check_device(args.device)
        source = checkpoint_of(args.source)
        if source != args.source:
            print(f"ancre generate: reading {source}", file=sys.stderr)
        trained = load_trained(source, args.device)
    except (ValueError, ConfigError, CheckpointError, FileNotFoundError) as error:
        print(f"ancre generate: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    tokenizer = trained.tokenizer
    prompts = [encode_prompt(tokenizer, text) for text in texts]
    generator = torch.Generator(trained.model.embed.weight.device).manual_seed(args.seed)
    stream = None
    if len(texts) == 1:
        sys.stdout.write(texts[0])
        stream = Stream(tokenizer, prompts[0], sys.stdout)
    started = time.perf_counter()
    try:
        new = generate_tokens(
            trained.model, prompts, args.max_new_tokens, sampling, tokenizer.eos_id, generator,
            use_cache=not args.no_cache, on_tokens=stream,
        )  # fmt: skip
    except ValueError as error:
        print(f"\nancre generate: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    elapsed = time.perf_counter() - started
    if stream is not None:
        sys.stdout.write(completion_text(tokenizer, prompts[0], new[0])[len(stream.shown) :] + "\n")
    else:
        for number, (text, tokens) in enumerate(zip(texts, new, strict=True), start=1):
            added = completion_text(tokenizer, prompts[number - 1], tokens)
            sys.stdout.write(f"--- prompt {number}\n{text}{added}\n")
    count = sum(len(tokens) for tokens in new)
    print(
        f"ancre generate: {count} new tokens for {len(texts)} prompt(s) in {elapsed:.2f} s "
        f"({count / elapsed:.1f} tokens/s, {'no cache' if args.no_cache else 'KV cache'}, "
        f"{args.device}, step {trained.step})",
        file=sys.stderr,
    )
    return 0


def check_device(name: str) -> None:
    """Refuses a ``--device`` that torch does not know or that this machine lacks.

    Raises:
        ValueError: The message names the device and what there is.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"--device {name!r} is not a device torch knows (cpu, cuda, cuda:1)"
        ) from None
    if device.type == "cpu":
        return
    if device.type != "cuda":
        raise ValueError(f"--device {name}: ancre generates on cpu or cuda")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(f"--device {name}: this machine has no CUDA GPU; use --device cpu")
    if device.index is not None and device.index >= count:
        raise ValueError(f"--device {name}: this machine has {count} CUDA GPU(s), 0 to {count - 1}")


def _read_prompts(path: Path) -> list[str]:
    """The non-empty lines of a prompts file.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: It is a folder, holds no prompt, or is not UTF-8 text.
    """
    if path.is_dir():
        raise ValueError(f"--prompts {path} is a folder; give a text file, one prompt per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"--prompts {path}: not UTF-8 text ({error})") from None
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"--prompts {path}: holds no prompt (one per line)")
    return prompts
