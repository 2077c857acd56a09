"""The JSON data files of local task YAMLs, checked line by line before the harness reads them.

A local task (``eval.tasks_path``, ``--tasks-path``) names its documents in
``dataset_kwargs.data_files`` (``dataset_path: json``). The ``datasets`` library
stops on a line that is not JSON with a traceback that names neither file nor line;
here such a line is refused first, with both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

JSON_SUFFIXES = (".json", ".jsonl")


class TaskDataError(ValueError):
    """A local task's data file is missing or holds a line that is not a JSON object."""


def local_data_files(tasks_path: Path) -> Iterator[tuple[Path, Path]]:
    """(task YAML, data file) for every JSON data file the YAMLs of a folder name."""
    for spec in sorted(tasks_path.rglob("*.yaml")):
        try:
            task = yaml.safe_load(spec.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue  # the harness's own tags (!function): its loader reports the rest
        kwargs = task.get("dataset_kwargs") if isinstance(task, dict) else None
        files = kwargs.get("data_files") if isinstance(kwargs, dict) else None
        for name in _names(files):
            path = Path(name) if Path(name).is_absolute() else spec.parent / name
            if path.suffix in JSON_SUFFIXES:
                yield spec, path


def _names(files: Any) -> Iterator[str]:
    """The file names of a ``data_files`` value: a name, a list, or a split -> either."""
    if isinstance(files, str):
        yield files
    elif isinstance(files, list):
        for item in files:
            yield from _names(item)
    elif isinstance(files, dict):
        for item in files.values():
            yield from _names(item)


def check_data_files(tasks_path: Path) -> None:
    """Refuses a missing data file, or one with a line that is not a JSON object.

    A ``.json`` file that is one JSON document (an array of objects) is accepted whole.

    Raises:
        TaskDataError: Naming the file, the line and the task YAML.
    """
    for spec, path in local_data_files(tasks_path):
        if not path.is_file():
            raise TaskDataError(f"{path} (data_files of {spec}): no such file")
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".json" and _whole_json(text):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise TaskDataError(
                    f"{path}:{number} (data_files of {spec}): not JSON ({error}); fix or "
                    "remove the line"
                ) from None
            if not isinstance(record, dict):
                raise TaskDataError(
                    f"{path}:{number} (data_files of {spec}): a JSON {type(record).__name__}, "
                    "not an object of the task's fields"
                )


def _whole_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
