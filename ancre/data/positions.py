"""Saved data positions: describing them, and whether they can continue on the data now.

A reader's position names its shard by key and size and the shard list its epoch
reads (``ancre.data.shards``); the loader's state holds those lists. Before a run
resumes, :func:`check_resume_data` compares them with the shards in the folder.
"""

from __future__ import annotations

from typing import Any

from ancre.config import DataConfig
from ancre.data.mixture import source_states
from ancre.data.shards import DataError, Shard, epoch_order, find_shards, list_digest, shard_list

STATE_FORMAT = "ancre-data"
STATE_VERSION = 2
"""The format of a loader's saved state (``TrainLoader.state_dict``). Version 2 names
shards by key and size (version 1 by index; still read)."""
STATE_KEYS = ("rank", "world_size", "num_workers", "readers", "next_reader")


def check_state_format(state: Any, where: str) -> None:
    """Refuses a saved loader state of another format, version or shape.

    Raises:
        DataError: Naming ``where`` (the rank file) and what is wrong.
    """
    if not isinstance(state, dict):
        raise DataError(f"{where}: the data position is not a JSON object")
    if state.get("format") != STATE_FORMAT or state.get("version") not in (1, STATE_VERSION):
        raise DataError(
            f"{where}: the data position is format {state.get('format')!r} version "
            f"{state.get('version')!r}, not {STATE_FORMAT} v1 or v{STATE_VERSION}; this "
            "checkpoint cannot be resumed by this ancre (its weights can: ancre convert)"
        )
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise DataError(f"{where}: the data position lacks {', '.join(missing)}")


def describe_position(position: dict[str, Any] | None) -> str:
    """Where a document came from, for messages: ``shard:line``, or the hub position."""
    if not position:
        return "the first document"
    if "shard" in position:
        return f"{position['shard']}:{position['line']}"
    if "line" in position:
        return f"shard {position['file']} of epoch {position['epoch']}, line {position['line']}"
    return f"a hub document of epoch {position.get('epoch', 0)}"


def digests(states: list[dict[str, Any] | None]) -> set[str]:
    """The shard lists the readers' positions name (a mixture's: every source's)."""
    found: set[str] = set()
    for state in states:
        if state and "mixture" in state:
            found |= digests(list(state["mixture"].values()))
        elif state and state.get("position") and "list" in state["position"]:
            found.add(state["position"]["list"])
    return found


def check_resume_data(config: DataConfig, seed: int, saved: list[dict[str, Any]]) -> list[str]:
    """Checks that saved data positions can continue on the shards there are now.

    Args:
        config: The ``data`` section of the resumed run.
        seed: The run's seed.
        saved: Every rank's loader ``state_dict()`` from the checkpoint.

    Returns:
        What changed and how the run deals with it, for the log (empty: nothing).

    Raises:
        DataError: A shard that a reader's current epoch has still to read is gone or
            changed size.
    """
    notes: list[str] = []
    for part in config.parts():
        if part.config.source != "local":
            continue
        lists: dict[str, Any] = {}
        positions: list[dict[str, Any]] = []
        for state in saved:
            lists.update(state.get("shard_lists", {}))
            for reader in state.get("readers", []):
                mine = source_states(reader, part.name) if config.is_mixture else reader
                positions.append((mine or {}).get("position") or {})
        for note in _check_positions(part.config, seed, f"{part.key}.path", lists, positions):
            if note not in notes:
                notes.append(note)
    return notes


def _check_positions(
    config: DataConfig,
    seed: int,
    key: str,
    lists: dict[str, Any],
    positions: list[dict[str, Any]],
) -> list[str]:
    """:func:`check_resume_data` for one local source, its readers' positions given."""
    now = shard_list(find_shards(config.path, "train", key))
    current = list_digest(now)
    sizes = {s.key: s.size for s in now}
    notes: list[str] = []
    for position in positions:
        digest = position.get("list", current)
        if digest == current:
            continue
        pairs = lists.get(digest)
        if pairs is None:
            raise DataError(f"the checkpoint's data position names an unknown shard list {digest}")
        keys = [k for k, _ in pairs]
        saved_list = [Shard(k, size, None) for k, size in pairs]
        order = epoch_order(saved_list, seed, position.get("epoch", 0), config.shuffle)
        needed = order[position.get("file", 0) :]
        bad = [s.key for s in needed if sizes.get(s.key) != s.size]
        if bad:
            raise DataError(
                f"{key}={config.path!r}: the shards changed since the checkpoint, and "
                f"{len(bad)} that the current epoch has still to read are gone or changed "
                f"size ({', '.join(bad[:5])}). Put them back as they were, or start a new "
                "run from the checkpoint's weights (ancre convert, then model.init_from)"
            )
        added = sorted(set(sizes) - set(keys))
        removed = sorted(set(keys) - set(sizes))
        note = (
            f"{key}={config.path!r}: {len(added)} shard(s) added"
            f"{' (' + ', '.join(added[:5]) + ')' if added else ''} and {len(removed)} "
            f"removed{' (' + ', '.join(removed[:5]) + ')' if removed else ''} since the "
            f"checkpoint; readers finish epoch {position.get('epoch', 0)} with the shards "
            "it began with, and the new list takes over at the next epoch"
        )
        if note not in notes:
            notes.append(note)
    return notes
