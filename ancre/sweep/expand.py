"""Sweeps: one YAML file that expands into many runs of a base config.

::

    name: ancre_vs_cascaded          # default: the file's stem
    out_dir: runs/sweeps             # run folders: <out_dir>/<name>/<run name>/
    base: [configs/quickstart.yaml]  # YAML files merged in order (one string for one file)
    overrides:                       # key: value for every run
      train.steps: 40
    grid:                            # cartesian product: every combination of these
      topology.kind: [cascaded, ancre]
      train.lr: [1.0e-3, 3.0e-3]
    zip:                             # paired lists of equal length: one column per run
      model.hidden_size: [128, 192]
      model.num_layers: [6, 8]
    run_name: "{topology.kind}-d{model.hidden_size}-lr{train.lr}"

``zip`` may also be a list of such mappings (several paired groups, each one axis
of the product). The axis key ``config`` names extra YAML files merged after
``base`` (a size's config, say); ``{config}`` in ``run_name`` gives their stems.
``run_name`` fills ``{key}`` (or ``{key:format}``) from each run's resolved config;
without it, runs are named by their axis values.

Every expanded run is validated with :func:`ancre.config.load_config` before any
run starts: an unknown key, a bad value, an empty axis, zip lists of different
lengths or two runs with one name raise :class:`SweepError` naming the key.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ancre.config import AncreConfig, ConfigError, flat_config, load_config
from ancre.run_folder import RunFolder

SWEEP_KEYS = ("name", "out_dir", "base", "overrides", "grid", "zip", "run_name")
CONFIG_AXIS = "config"
# set by the sweep for every run, so they cannot be swept or overridden
RESERVED = ("run.name", "run.out_dir", "run.overwrite", "checkpoint.resume")


class SweepError(ValueError):
    """A sweep file that cannot expand into valid runs.

    Attributes:
        key: The offending key (``grid.train.lr``, ``zip``, ``run_name``, a config key).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep.

    Attributes:
        name: The run's name (its folder under the sweep's folder).
        files: The YAML files of the run, merged in order.
        overrides: ``key=value`` overrides: fixed ones, axis values, then the sweep's own.
        values: The axis values of this run, by key.
        config: The run's validated config.
    """

    name: str
    files: tuple[str, ...]
    overrides: tuple[str, ...]
    values: dict[str, Any]
    config: AncreConfig

    def train_args(self) -> list[str]:
        """Arguments of ``ancre train`` for this run."""
        return [*self.files, *self.overrides]

    @property
    def folder(self) -> Path:
        """The run folder."""
        return RunFolder.of(self.config).root


@dataclass(frozen=True)
class Sweep:
    """An expanded sweep.

    Attributes:
        name: The sweep's name.
        folder: Where its runs, logs and summary go.
        runs: The runs, in expansion order (the first axis varies slowest).
    """

    name: str
    folder: Path
    runs: list[SweepRun] = field(default_factory=list)


def load_sweep(path: str | Path) -> Sweep:
    """Reads a sweep file, expands it and validates every run.

    Args:
        path: The sweep YAML file.

    Returns:
        The expanded sweep.

    Raises:
        SweepError: The file is missing or malformed, or a run would not be valid.
    """
    path = Path(path)
    if not path.is_file():
        raise SweepError(str(path), "no such sweep file")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise SweepError(str(path), f"not valid YAML: {error}") from None
    if not isinstance(spec, dict):
        raise SweepError(str(path), "the top level must be a mapping")
    for key in spec:
        if key not in SWEEP_KEYS:
            raise SweepError(str(key), f"unknown sweep key; allowed: {', '.join(SWEEP_KEYS)}")
    name = str(spec.get("name") or path.stem)
    folder = Path(str(spec.get("out_dir") or "runs/sweeps")) / name
    base = _file_list("base", spec.get("base") or [])
    fixed = _overrides(spec.get("overrides") or {})
    axes = _axes(spec.get("grid") or {}, spec.get("zip") or [])
    _check_keys([k for k, _ in fixed], [k for axis in axes for k in axis[0]])
    template = spec.get("run_name")
    if template is not None and not isinstance(template, str):
        raise SweepError("run_name", f"must be a string template, not {template!r}")

    runs: list[SweepRun] = []
    for index, combination in enumerate(itertools.product(*(rows for _, rows in axes))):
        values = {k: v for (keys, _), row in zip(axes, combination, strict=True)
                  for k, v in zip(keys, row, strict=True)}  # fmt: skip
        files = tuple(base + _file_list(CONFIG_AXIS, values.get(CONFIG_AXIS, [])))
        swept = [(k, v) for k, v in values.items() if k != CONFIG_AXIS]
        overrides = [f"{k}={_dotlist_value(v)}" for k, v in [*fixed, *swept]]
        try:
            config = load_config(files, [*overrides, f"run.out_dir={folder}"])
        except ConfigError as error:
            where = ", ".join(f"{k}={v}" for k, v in values.items()) or "the only run"
            message = str(error).removeprefix(f"{error.key}: ")
            raise SweepError(error.key, f"{message} (run {index + 1}: {where})") from None
        run_name = _run_name(template, config, values)
        own = [f"run.name={run_name}", f"run.out_dir={folder}", "run.overwrite=false",
               "checkpoint.resume=auto", *_wandb_labels(config, name, values)]  # fmt: skip
        config = load_config(files, [*overrides, *own])
        runs.append(SweepRun(run_name, files, (*overrides, *own), values, config))
    seen: dict[str, SweepRun] = {}
    for run in runs:
        if run.name in seen:
            raise SweepError(
                "run_name",
                f"gives two runs the name {run.name!r} ({seen[run.name].values} and "
                f"{run.values}); put the keys that differ in the template",
            )
        seen[run.name] = run
    return Sweep(name, folder, runs)


def _file_list(key: str, value: Any) -> list[str]:
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise SweepError(key, f"must be a YAML file or a list of them, not {value!r}")
    return list(files)


def _overrides(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return [(k, v) for k, v in (item.split("=", 1) for item in value)]
    raise SweepError("overrides", "must map keys to values, or list key=value strings")


def _axes(grid: Any, zipped: Any) -> list[tuple[list[str], list[tuple[Any, ...]]]]:
    """Each axis: its keys and its rows (one tuple of values per position)."""
    if not isinstance(grid, Mapping):
        raise SweepError("grid", "must map keys to lists of values")
    axes = []
    for key, values in grid.items():
        axes.append(([str(key)], [(v,) for v in _values(f"grid.{key}", values)]))
    groups = [zipped] if isinstance(zipped, Mapping) else zipped
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
        raise SweepError("zip", "must map keys to lists of equal length (or list such maps)")
    for group in groups:
        if not group:
            raise SweepError("zip", "a zip group is empty")
        columns = {str(k): _values(f"zip.{k}", v) for k, v in group.items()}
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            raise SweepError("zip", f"lists must have equal lengths: {listed}")
        axes.append((list(columns), list(zip(*columns.values(), strict=True))))
    return axes


def _values(key: str, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise SweepError(key, f"must be a list of values, not {values!r}")
    if not values:
        raise SweepError(key, "is empty; give at least one value")
    return values


def _check_keys(fixed: Sequence[str], swept: Sequence[str]) -> None:
    seen: set[str] = set()
    for key in [*fixed, *swept]:
        if key in RESERVED:
            raise SweepError(key, f"is set by the sweep for every run ({', '.join(RESERVED)})")
        if key in seen:
            raise SweepError(key, "appears twice among the overrides and axes")
        seen.add(key)


WANDB_JOB_TYPE_CHARS = 64
"""W&B's longest job type."""


def _wandb_labels(config: AncreConfig, sweep: str, values: Mapping[str, Any]) -> list[str]:
    """The W&B group (the sweep) and job type (the run's axes but the seed), unless set."""
    labels = []
    if config.logging.wandb_group is None:
        labels.append(f"logging.wandb_group={sweep}")
    swept = [key for key in values if key not in ("run.seed", CONFIG_AXIS)]
    last = [key.rsplit(".", 1)[-1] for key in swept]
    axes = [
        f"{name if last.count(name) == 1 else key}={_format_value(values[key])}"
        for key, name in zip(swept, last, strict=True)
    ] + [Path(f).stem for f in _file_list(CONFIG_AXIS, values.get(CONFIG_AXIS, []))]
    if config.logging.wandb_job_type is None and axes:
        job = " ".join(axes)[:WANDB_JOB_TYPE_CHARS].rstrip()
        labels.append(f"logging.wandb_job_type='{job}'")
    return labels


def _dotlist_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list):
        raise SweepError(str(value), "config values are scalars; lists and maps are not allowed")
    if value == "":
        return '""'  # an empty string, which "key=" alone would make null
    return str(value)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _run_name(template: str | None, config: AncreConfig, values: Mapping[str, Any]) -> str:
    if template is None:
        template = "-".join(f"{{{key}}}" for key in values) or "run"
    flat = flat_config(config)
    stems = "+".join(Path(f).stem for f in _file_list(CONFIG_AXIS, values.get(CONFIG_AXIS, [])))

    def fill(match: re.Match[str]) -> str:
        key, spec = match.group(1), match.group(2)
        if key == CONFIG_AXIS:
            value: Any = stems
        elif key in flat and key not in ("run.name", "run.out_dir"):
            value = flat[key]
        else:
            raise SweepError("run_name", f"{{{key}}} names no config key (e.g. {{train.lr}})")
        return format(value, spec) if spec else _format_value(value)

    name = re.sub(r"\{([^{}:]+)(?::([^{}]*))?\}", fill, template)
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", name).strip("_") or "run"
