"""What an offline W&B run wrote: the history records of its ``.wandb`` file.

The file is W&B's transaction log: a 7-byte header (``:W&B``, a magic number, a
version), then records in LevelDB's log format (32 KiB blocks; each record a 7-byte
header of checksum, little-endian length and type: full, first, middle or last) holding
``wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    """The raw records of a ``.wandb`` file."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    found, partial, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's tail is padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind, chunk = data[pos + 6], data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            found.append(chunk)
        elif kind == FIRST:
            partial = chunk
        elif kind == MIDDLE:
            partial += chunk
        elif kind == LAST:
            found.append(partial + chunk)
    return found


def history(run_dir: Path) -> list[dict]:
    """The logged rows (``_step`` and every key) of an offline run folder, in order."""
    [log] = run_dir.glob("*.wandb")
    rows = []
    for raw in records(log):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            rows.append({
                item.key or "/".join(item.nested_key): json.loads(item.value_json)
                for item in record.history.item
            })  # fmt: skip
    return rows


def logged_config(run_dir: Path) -> dict:
    """The config an offline run logged (its config records, merged in order)."""
    [log] = run_dir.glob("*.wandb")
    config: dict = {}
    for raw in records(log):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        items = record.config.update if kind == "config" else record.run.config.update
        if kind in ("config", "run"):
            config.update({item.key: json.loads(item.value_json) for item in items})
    return config
