"""The run configuration: one typed schema, one merge order, checks that never mutate.

- ``sections``: the dataclass of each YAML section, its documented fields and its check
  (``topology``, ``train`` and ``data``: those sections', each with its own module).
- ``loading``: defaults <- YAML files <- dotlist, old key names, errors that name the key.
- ``checks``: :class:`ConfigError` and the checks the sections share.

This package imports nothing else from ``ancre``.
"""

from ancre.config.checks import ConfigError
from ancre.config.data import DataPart, SourceConfig
from ancre.config.loading import (
    RENAMED_KEYS,
    check_world_size,
    config_dict,
    config_yaml,
    flat_config,
    load_config,
    save_config,
    validate,
)
from ancre.config.sections import (
    AncreConfig,
    CheckpointConfig,
    DataConfig,
    EvalConfig,
    LoggingConfig,
    ModelConfig,
    RunConfig,
    TopologyConfig,
    TrainConfig,
)
from ancre.config.topology import PRUNE_MODES, TOPOLOGY_KINDS

__all__ = [
    "PRUNE_MODES",
    "TOPOLOGY_KINDS",
    "RENAMED_KEYS",
    "AncreConfig",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "DataPart",
    "EvalConfig",
    "LoggingConfig",
    "ModelConfig",
    "RunConfig",
    "SourceConfig",
    "TopologyConfig",
    "TrainConfig",
    "check_world_size",
    "config_dict",
    "config_yaml",
    "flat_config",
    "load_config",
    "save_config",
    "validate",
]
