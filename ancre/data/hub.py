"""allenai/c4 (or any dataset) streamed from the Hugging Face hub.

The first contact is bounded to :data:`HUB_TIMEOUT_S`, so a machine without network
gets a message saying how to use local shards instead of a hang. The ``datasets``
package is imported when a run streams (its import takes about 0.6 s, which every run
on local shards would otherwise pay at start).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ancre.data.shards import MissingDataError, document_text

if TYPE_CHECKING:
    import datasets

HUB_TIMEOUT_S = 60.0
"""Longest wait for the hub's first document before a run gives up."""


def _first_contact(dataset: datasets.IterableDataset, what: str) -> None:
    """Reads one example within HUB_TIMEOUT_S, or fails saying how to use local shards."""
    outcome: dict[str, BaseException] = {}

    def probe() -> None:
        try:
            next(iter(dataset))
        except BaseException as error:  # reported in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S)
    problem = (
        f"no answer within {HUB_TIMEOUT_S:.0f} s" if thread.is_alive() else outcome.get("error")
    )
    if problem is not None:
        raise MissingDataError(
            f"data.source=hub: cannot stream {what} from the Hugging Face hub ({problem}). "
            "Download the C4 shards (c4-train.*.json.gz, c4-validation.*.json.gz) and set "
            "data.source=local data.path=FOLDER"
        )


def open_hub(name: str, subset: str, split: str) -> datasets.IterableDataset:
    """Opens a streaming split of a hub dataset, failing within HUB_TIMEOUT_S if unreachable.

    Args:
        name: Dataset name, e.g. ``allenai/c4``.
        subset: Its configuration, e.g. ``en`` (empty: the dataset's default).
        split: ``train`` or ``validation``.

    Returns:
        The streaming dataset.

    Raises:
        MissingDataError: The hub cannot be reached; the message says what to do instead.
    """
    import datasets  # only runs that stream pay for this import (see the module docstring)

    what = f"{name} ({subset}, {split})"
    outcome: dict[str, Any] = {}

    def load() -> None:
        try:
            outcome["dataset"] = datasets.load_dataset(
                name, subset or None, split=split, streaming=True
            )
        except BaseException as error:  # reported in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S)
    if "dataset" not in outcome:
        problem = outcome.get("error") or f"no answer within {HUB_TIMEOUT_S:.0f} s"
        raise MissingDataError(
            f"data.source=hub: cannot stream {what} from the Hugging Face hub ({problem}). "
            "Download the C4 shards (c4-train.*.json.gz, c4-validation.*.json.gz) and set "
            "data.source=local data.path=FOLDER"
        )
    _first_contact(outcome["dataset"], what)
    return outcome["dataset"]


class StreamingDocuments:
    """The training documents of one reader out of ``num_readers``, from a streaming dataset.

    Used for ``data.source: hub`` (allenai/c4 streamed by the datasets library), and
    for any streaming ``datasets.IterableDataset``. Readers are split with
    ``datasets.distributed.split_dataset_by_node`` (whole files per reader when the file
    count divides evenly, else every R-th example); positions hold the dataset's own
    ``state_dict``.
    """

    def __init__(
        self,
        dataset: datasets.IterableDataset,
        text_field: str,
        reader: int = 0,
        num_readers: int = 1,
    ) -> None:
        from datasets.distributed import split_dataset_by_node  # see the module docstring

        self.text_field = text_field
        self._dataset = split_dataset_by_node(dataset, rank=reader, world_size=num_readers)
        self._start = self._dataset.state_dict()

    def documents(
        self, position: dict[str, Any] | None, skipped: Counter[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yields this reader's documents with the dataset state after each, epoch after epoch."""
        epoch = position["epoch"] if position else 0
        self._dataset.load_state_dict(position["dataset"] if position else self._start)
        while True:
            self._dataset.set_epoch(epoch)
            for example in self._dataset:
                text, skip = document_text(example, self.text_field)
                if skip is not None:
                    skipped[skip.reason] += 1
                else:
                    yield text, {"epoch": epoch, "dataset": self._dataset.state_dict()}
            epoch += 1
            self._dataset.load_state_dict(self._start)
