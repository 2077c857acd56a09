"""Per-rank training batches with exact resume, and the fixed validation set.

A rank reads through ``data.num_workers`` DataLoader workers (or in the trainer
process when it is 0). Each (rank, worker) pair is one *reader* of the training
source (see ``ancre.data.sources``): reader ``rank * W + w`` of ``world_size * W``.
Each reader turns its documents into windows with its own packer and builds whole
micro-batches; the DataLoader hands them out round-robin, worker 0, 1, ..., W-1, 0, ...

Resume: every batch carries the state of the reader that made it (the source position
after its last document, the packer's pending tokens, the skip counts). The loader
keeps the latest state of each reader and which reader comes next; that is its
``state_dict()``, with the shard lists the readers' epochs read (by name and size). A
loader given that state restarts each reader where it stopped, without re-reading what
it consumed, and rotates the workers so the round-robin order goes on unbroken: it
yields exactly the batches an uninterrupted loader would. When shards were added to
the folder since, each reader finishes its epoch with the shards it began with and the
new list takes over at the next epoch (``ancre.data.positions.check_resume_data`` says
so, or refuses when a shard the epoch still needs is gone).

A document the tokenizer cannot encode is skipped and counted (``tokenizer_error``)
like a bad line, with its file and line.

A mixture (``data.sources``) has one window reader per source in each reader, and a
``ancre.data.mixture.MixtureReader`` over them; its state holds every source's.

The validation set is ``ancre.data.validation``'s.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ancre.config import DataConfig
from ancre.data.mixture import MixtureReader, source_states
from ancre.data.packing import Packer
from ancre.data.positions import STATE_FORMAT, STATE_VERSION, describe_position, digests
from ancre.data.shards import find_shards, list_digest, shard_list
from ancre.data.sources import DocumentSource, training_source
from ancre.data.tokenizer import Tokenizer
from ancre.stop_signals import ignore_stop_signals

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Target id of positions left out of the loss (padding): PyTorch's default ignore_index,
which the model's cross-entropy leaves out."""
MAX_TOKENIZER_WARNINGS = 5


def to_batch(rows: list[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacks windows into inputs and targets, padding masked out of the targets.

    Args:
        rows: (window of T+1 token ids, count of real tokens) pairs.

    Returns:
        Inputs (B, T) and targets (B, T), int64; targets are IGNORE_INDEX past the
        real tokens.
    """
    tokens = torch.tensor([window for window, _ in rows], dtype=torch.long)  # (B, T+1)
    valid = torch.tensor([count for _, count in rows])  # (B,)
    targets = tokens[:, 1:].clone()  # (B, T)
    positions = torch.arange(1, tokens.shape[1])  # (T,) index of each target in its window
    targets[positions.unsqueeze(0) >= valid.unsqueeze(1)] = IGNORE_INDEX
    return tokens[:, :-1], targets


class WindowReader:
    """One reader's documents turned into windows, with a state to restart from."""

    def __init__(
        self,
        source: DocumentSource,
        tokenizer: Tokenizer,
        window: int,
        packing: str,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.packer = Packer(tokenizer.eos_id, window, packing)
        self.skipped: Counter[str] = Counter(state["skipped"] if state else {})
        self.position: dict[str, Any] | None = state["position"] if state else None
        if state:
            self.packer.pending = state["pending"]
        self._documents = source.documents(self.position, self.skipped)

    def __iter__(self) -> WindowReader:
        return self

    def __next__(self) -> tuple[list[int], int]:
        """The next window (T+1 ids) and its count of real tokens."""
        while (item := self.packer.pop()) is None:
            text, self.position = next(self._documents)
            try:
                ids = self.tokenizer.encode_one(text)
            except Exception as error:  # any document the tokenizer rejects is skipped
                self.skipped["tokenizer_error"] += 1
                if self.skipped["tokenizer_error"] <= MAX_TOKENIZER_WARNINGS:
                    logger.warning(
                        "skipped %s (tokenizer_error): %s: %s", describe_position(self.position),
                        type(error).__name__, str(error)[:200],
                    )  # fmt: skip
                continue
            self.packer.add(ids)
        return item

    def state_dict(self) -> dict[str, Any]:
        """Where this reader stands: source position, pending tokens, skip counts."""
        return {
            "position": self.position,
            "pending": self.packer.pending,
            "skipped": dict(self.skipped),
        }


@dataclass(frozen=True)
class _ReaderSpec:
    """What a worker process needs to rebuild its reader (picklable)."""

    config: DataConfig
    tokenizer_path: str
    micro_batch_size: int
    rank: int
    world_size: int
    workers: int
    seed: int
    earlier: dict[str, list[list[Any]]]

    def batches(
        self, logical: int, state: dict[str, Any] | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]]:
        """The micro-batches of reader ``logical`` of this rank, each with its state after."""
        tokenizer = Tokenizer(self.tokenizer_path)
        index, count = self.rank * self.workers + logical, self.world_size * self.workers
        parts = self.config.parts()
        readers = {
            part.name: WindowReader(
                training_source(part.config, index, count, self.seed, self.earlier),
                tokenizer,
                self.config.seq_len + 1,
                self.config.packing,
                source_states(state, part.name) if self.config.is_mixture else state,
            )  # fmt: skip
            for part in parts
        }
        reader: WindowReader | MixtureReader = (
            MixtureReader(readers, {part.name: part.weight for part in parts}, state)
            if self.config.is_mixture
            else readers[""]
        )
        while True:
            rows = list(itertools.islice(reader, self.micro_batch_size))
            yield *to_batch(rows), logical, reader.state_dict()


class _ReaderBatches(IterableDataset):
    """Per DataLoader worker, the batches of one reader; worker w runs reader first + w."""

    def __init__(self, spec: _ReaderSpec, states: list[dict[str, Any] | None], first: int):
        super().__init__()
        self.spec = spec
        self.states = states
        self.first = first

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]]:
        info = get_worker_info()
        if info is not None:
            ignore_stop_signals()  # the trainer process decides when to stop
        logical = ((0 if info is None else info.id) + self.first) % self.spec.workers
        yield from self.spec.batches(logical, self.states[logical])


class TrainLoader:
    """The endless training batches of one rank, resumable with state_dict()."""

    def __init__(
        self,
        config: DataConfig,
        tokenizer: Tokenizer,
        micro_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        self.config = config
        self.workers = max(1, config.num_workers)
        self._lists: dict[str, list[list[Any]]] = {}
        for part in config.parts():
            if part.config.source == "local":
                now = shard_list(find_shards(part.config.path, "train"))
                self._lists[list_digest(now)] = [[s.key, s.size] for s in now]
        self._spec = _ReaderSpec(
            config, str(tokenizer.path), micro_batch_size, rank, world_size, self.workers, seed,
            {},
        )  # fmt: skip
        self._states: list[dict[str, Any] | None] = [None] * self.workers
        self._next = 0
        self._batches = self._start()

    def _start(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]]:
        dataset = _ReaderBatches(self._spec, list(self._states), self._next)
        if self.config.num_workers == 0:
            return iter(dataset)
        return iter(
            DataLoader(
                dataset,
                batch_size=None,
                num_workers=self.config.num_workers,
                pin_memory=torch.cuda.is_available(),
            )
        )

    def __iter__(self) -> TrainLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next micro-batch: inputs (B, T) and targets (B, T), int64."""
        inputs, targets, logical, state = next(self._batches)
        if logical != self._next:
            raise RuntimeError(f"batch from reader {logical}, expected reader {self._next}")
        self._states[logical] = state
        self._next = (logical + 1) % self.workers
        return inputs, targets

    def skipped(self) -> Counter[str]:
        """Input lines this rank's readers skipped, by reason, since the run began."""
        total: Counter[str] = Counter()
        for state in self._states:
            if state is not None:
                total.update(state["skipped"])
        return total

    def state_dict(self) -> dict[str, Any]:
        """The loader's position: each reader's state and which reader comes next."""
        spec = self._spec
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "rank": spec.rank,
            "world_size": spec.world_size,
            "num_workers": self.config.num_workers,
            "next_reader": self._next,
            "readers": list(self._states),
            "shard_lists": {d: self._lists[d] for d in digests(self._states) if d in self._lists},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from a state_dict() of a loader with the same rank, world and workers.

        Raises:
            ValueError: The state is of another format, or was written by a loader that
                split the data differently (rank, world size or workers differ).
        """
        if state.get("format") != STATE_FORMAT or state.get("version") not in (1, STATE_VERSION):
            raise ValueError(f"not an {STATE_FORMAT} v1 or v{STATE_VERSION} loader state")
        mine = (self._spec.rank, self._spec.world_size, self.config.num_workers)
        theirs = (state["rank"], state["world_size"], state["num_workers"])
        if mine != theirs:
            raise ValueError(
                f"the data position was saved by rank {theirs[0]} of {theirs[1]} with "
                f"{theirs[2]} workers; this is rank {mine[0]} of {mine[1]} with {mine[2]}. "
                "Resume with the same number of processes and data.num_workers"
            )
        self._states = list(state["readers"])
        self._next = state["next_reader"]
        self._lists.update(state.get("shard_lists", {}))
        self._spec = replace(self._spec, earlier=dict(state.get("shard_lists", {})))
        self._batches = self._start()
