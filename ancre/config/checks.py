"""The config's error and the checks each section uses on its own fields.

This module imports nothing else from ``ancre``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


class ConfigError(ValueError):
    """A config key holds a value the schema does not allow.

    Attributes:
        key: Dotted name of the offending key (``train.global_batch_size``), or the file.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def folder_name(key: str, value: str) -> None:
    """A single plain path component: the run's folder inside run.out_dir."""
    bad = (
        "is empty" if not value.strip()
        else "is a reference to a folder, not a name" if value.strip() in (".", "..")
        else "holds a path separator" if any(c in value for c in "/\\")
        else "holds a NUL character" if "\0" in value
        else "starts or ends with a space" if value != value.strip()
        else None
    )  # fmt: skip
    if bad:
        raise ConfigError(
            key,
            f"{value!r} {bad}; it must be one plain folder name such as 'quickstart' "
            "(put the parent folder in run.out_dir)",
        )


def choice(key: str, value: str | None, allowed: Sequence[str], optional: bool = False) -> None:
    """Raises unless ``value`` is one of ``allowed`` (or None, when optional)."""
    if value is None and optional:
        return
    if value not in allowed:
        raise ConfigError(key, f"is {value!r}; allowed: {', '.join(allowed)}")


def positive(key: str, value: float | None, optional: bool = False) -> None:
    """Raises unless ``value`` is a finite number above zero (or None, when optional)."""
    if value is None and optional:
        return
    if value is None or not math.isfinite(value) or value <= 0:
        raise ConfigError(key, f"is {value}; it must be a positive number")


def non_negative(key: str, value: float) -> None:
    """Raises unless ``value`` is a finite number, zero or above."""
    if not math.isfinite(value) or value < 0:
        raise ConfigError(key, f"is {value}; it must be zero or positive")
