"""Reading and writing the run configuration: one merge order, old key names, named errors.

A run is described by an :class:`~ancre.config.sections.AncreConfig`, merged with
OmegaConf in the order ``defaults <- YAML files <- command-line dotlist``
(``train.steps=100``), then checked. The resolved config is written into the run folder
with :func:`save_config` and read back with :func:`load_config`.

This module imports nothing else from ``ancre``.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from ancre.config.checks import ConfigError
from ancre.config.data import SourceConfig
from ancre.config.hf_source import with_hf_source
from ancre.config.sections import AncreConfig

RENAMED_KEYS = {
    "train.activation_checkpointing": "train.recompute",
    "train.checkpoint_every_k": "train.recompute_every_k",
}
"""Old key -> new key. Old names are read (with a FutureWarning) for one more release."""
LIST_ITEMS: dict[type, str] = {SourceConfig: "data.sources[]"}
"""Dataclasses of list items, by the list that holds them (its errors lose the path)."""


def load_config(
    path: str | Path | Sequence[str | Path] | None = None, overrides: Sequence[str] = ()
) -> AncreConfig:
    """Merges defaults, YAML files and dotlist overrides, then validates the result.

    Args:
        path: A YAML file, or several merged in order (a base config, then fragments
            such as ``configs/data/c4.yaml``); None uses the defaults alone.
        overrides: ``key=value`` strings, e.g. ``["train.steps=100"]``; they win over
            the files.

    Returns:
        The validated config.

    Raises:
        ConfigError: The file is missing or unreadable, a key is unknown, a value has the
            wrong type, or a value is not allowed.
    """
    paths = [] if path is None else [path] if isinstance(path, str | Path) else list(path)
    merged = OmegaConf.structured(AncreConfig)
    try:
        for file in paths:
            merged = OmegaConf.merge(merged, _read_yaml(Path(file)))
        items = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(item, "an override must be key=value, e.g. train.steps=100")
            key, _, value = item.partition("=")
            items.append(f"{_current_name(key.strip(), 'the command line')}={value}")
        if items:  # one merge: a later item wins over an earlier one of the same key
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(items))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise _named(error) from None
    assert isinstance(config, AncreConfig)
    config = with_hf_source(config)  # model.init_from: hf:FOLDER decides the shape
    validate(config)
    return config


def save_config(config: AncreConfig, path: str | Path) -> None:
    """Writes the resolved config as YAML; :func:`load_config` reads it back unchanged.

    Args:
        config: The config to write.
        path: Destination file.
    """
    Path(path).write_text(config_yaml(config))


def config_yaml(config: AncreConfig) -> str:
    """The resolved config as YAML text (what :func:`save_config` writes)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def config_dict(config: AncreConfig) -> dict[str, Any]:
    """Returns the config as nested plain dicts (for metrics sinks and manifests)."""
    return OmegaConf.to_container(OmegaConf.structured(config))  # type: ignore[return-value]


def flat_config(config: AncreConfig) -> dict[str, Any]:
    """The config as dotted keys and leaf values: ``{"train.lr": 0.001, ...}``."""
    flat: dict[str, Any] = {}

    def walk(tree: dict[str, Any], prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(config_dict(config), "")
    return flat


def validate(config: AncreConfig) -> None:
    """Checks every value against what the schema allows (each section, then across them).

    Shape checks that need a preset's numbers live with the presets in
    ``ancre.model.presets``, and the batch check that needs the world size in
    :func:`check_world_size`.

    Args:
        config: The config to check; it is not changed.

    Raises:
        ConfigError: The first value that is not allowed, with its key.
    """
    config.check()


def check_world_size(config: AncreConfig, world_size: int) -> int:
    """Checks that the global batch splits evenly over the processes.

    Args:
        config: A validated config.
        world_size: Number of training processes.

    Returns:
        The number of gradient-accumulation micro-steps per optimiser step.

    Raises:
        ConfigError: ``train.global_batch_size`` is not a multiple of
            ``train.micro_batch_size x world_size``.
    """
    per_step = config.train.micro_batch_size * world_size
    if config.train.global_batch_size % per_step:
        raise ConfigError(
            "train.global_batch_size",
            f"is {config.train.global_batch_size}, not a multiple of train.micro_batch_size "
            f"({config.train.micro_batch_size}) x world size ({world_size}) = {per_step}; "
            "change one of them",
        )
    return config.train.global_batch_size // per_step


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(str(path), "no such config file")
    try:
        with open(path, encoding="utf-8") as handle:  # marks in errors name the file
            content = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise ConfigError(str(path), f"not valid YAML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), f"not UTF-8 text ({error})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(str(path), "the top level must be a mapping of sections")
    known = {f.name for f in fields(AncreConfig)}
    for section, values in content.items():
        if section not in known:
            raise ConfigError(
                str(section), f"unknown section in {path}; allowed: {', '.join(sorted(known))}"
            )
        if values is not None and not isinstance(values, dict):
            allowed = ", ".join(_keys_beside(f"{section}.key"))
            raise ConfigError(
                str(section), f"in {path} must be a mapping of keys ({allowed}), not {values!r}"
            )
        for key in list(values or {}):
            new_section, _, new_key = _current_name(f"{section}.{key}", str(path)).partition(".")
            if (new_section, new_key) != (section, key):
                values[new_key] = values.pop(key)
    return OmegaConf.create(content)


def _current_name(key: str, where: str) -> str:
    """The key under its current name; an old name is accepted with a FutureWarning."""
    if (new := RENAMED_KEYS.get(key)) is None:
        return key
    warnings.warn(
        f"{key} (in {where}) is deprecated and will stop working in the next release; "
        f"it is read as {new}: rename it",
        FutureWarning,
        stacklevel=4,
    )
    return new


def _named(error: OmegaConfBaseException) -> ConfigError:
    key = getattr(error, "full_key", None) or "config"
    first_line = str(getattr(error, "msg", error)).splitlines()[0]
    item = getattr(error, "object_type", None)
    if isinstance(error, ConfigKeyError) and item in LIST_ITEMS and "." not in key:
        allowed = ", ".join(f.name for f in fields(item))
        return ConfigError(f"{LIST_ITEMS[item]}.{key}", f"{first_line}; allowed: {allowed}")
    if isinstance(error, ConfigKeyError):
        if "Did you mean" not in first_line and (suggestion := _suggest(key)):
            first_line += f"; did you mean {suggestion}?"
        first_line += f"; allowed: {', '.join(_keys_beside(key))}"
    return ConfigError(key, first_line)


def _suggest(full_key: str) -> str | None:
    """The schema key closest to a mistyped one (``steps`` -> ``train.steps``)."""
    every = [
        f"{section.name}.{f.name}"
        for section in fields(AncreConfig)
        for f in fields(get_type_hints(AncreConfig)[section.name])
    ]
    last = full_key.split(".")[-1]
    same_name = [key for key in every if key.endswith("." + last)]
    if len(same_name) == 1:
        return same_name[0]
    close = difflib.get_close_matches(full_key, every, n=1, cutoff=0.75)
    return close[0] if close else None


def _keys_beside(full_key: str) -> list[str]:
    """The schema's keys in the section that holds ``full_key`` (sections for a top key)."""
    schema: Any = AncreConfig
    for part in full_key.split(".")[:-1]:
        schema = get_type_hints(schema).get(part)
        if not is_dataclass(schema):
            return []
    return [f.name for f in fields(schema)]
