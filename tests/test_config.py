"""Tests for ancre/config/: defaults, merge order, round trip and every rejection."""

from __future__ import annotations

from pathlib import Path

import pytest

from ancre.config import (
    AncreConfig,
    ConfigError,
    check_world_size,
    config_dict,
    load_config,
    save_config,
    validate,
)
from tests.conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_load_and_validate() -> None:
    config = load_config()
    assert config == AncreConfig()
    validate(config)
    assert config.model.preset == "tiny" and config.topology.kind == "ancre"


def test_file_over_defaults_and_override_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  steps: 500\n  lr: 5e-3\ntopology:\n  kind: cascaded\n")
    config = load_config(path, ["train.steps=700", "topology.temperature=0.5"])
    assert config.train.steps == 700
    assert config.train.lr == 5e-3
    assert config.topology.kind == "cascaded"
    assert config.topology.temperature == 0.5
    assert config.train.micro_batch_size == AncreConfig().train.micro_batch_size
    assert load_config(path).train.steps == 500


def test_later_override_wins() -> None:
    assert load_config(None, ["train.steps=300", "train.steps=400"]).train.steps == 400


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == AncreConfig()


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    overrides = [
        "model.preset=null",
        "model.hidden_size=96",
        "model.intermediate_size=256",
        "model.num_layers=3",
        "model.num_heads=4",
        "model.max_seq_len=512",
        "topology.kind=uniform",
        "data.tokenizer=/models/sp.model",
        "train.eps=1e-10",
        "train.precision=fp32",
        "run.overwrite=true",
    ]
    config = load_config(None, overrides)
    path = tmp_path / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config
    assert config_dict(load_config(path)) == config_dict(config)


def rejected(overrides: list[str], path: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("train.steps=abc", "train.steps", "Integer"),
        ("topology.kind=foo", "topology.kind", "allowed: cascaded, ancre, uniform"),
        ("train.precision=fp16", "train.precision", "allowed: fp32, bf16"),
        ("model.preset=huge", "model.preset", "allowed: tiny, 60m"),
        ("train.steps=0", "train.steps", "positive"),
        ("train.lr=-1e-3", "train.lr", "positive"),
        ("train.lr=nan", "train.lr", "positive"),
        ("model.hidden_size=0", "model.hidden_size", "positive"),
        ("data.seq_len=-4", "data.seq_len", "positive"),
        ("topology.temperature=0", "topology.temperature", "positive"),
        ("eval.tokens=0", "eval.tokens", "positive"),
        ("train.grad_clip=-1", "train.grad_clip", "zero or positive"),
        ("train.min_lr_ratio=1.5", "train.min_lr_ratio", "0 to 1"),
        ("train.beta2=1.0", "train.beta2", "[0, 1)"),
        ("train.zero_stage=4", "train.zero_stage", "0, 1, 2, 3"),
        ("train.global_batch_size=12", "train.global_batch_size", "train.micro_batch_size=8"),
        ("train.warmup_steps=2000", "train.warmup_steps", "train.steps=1000"),
        ("model.max_seq_len=128", "model.max_seq_len", "data.seq_len=256"),
        ("model.preset=null", "model.hidden_size", "model.preset is null"),
        ("train.steps", "train.steps", "key=value"),
    ],
)
def test_bad_override(override: str, key: str, allowed: str) -> None:
    error = rejected([override])
    assert error.key == key
    assert allowed in str(error)


def test_preset_null_needs_every_shape_field() -> None:
    shape = ["model.hidden_size=64", "model.intermediate_size=128", "model.num_layers=2"]
    assert rejected(["model.preset=null", *shape]).key == "model.num_heads"
    config = load_config(None, ["model.preset=null", *shape, "model.num_heads=2"])
    assert config.model.preset is None


def test_validate_never_changes_the_config() -> None:
    config = load_config(None, ["train.steps=10", "train.warmup_steps=10"])
    before = config_dict(config)
    validate(config)
    assert config_dict(config) == before


def test_unknown_key_in_dotlist() -> None:
    error = rejected(["train.stepz=3"])
    assert error.key == "train.stepz" and "steps" in str(error)
    assert rejected(["nosuch.steps=3"]).key == "nosuch"


def test_unknown_key_in_yaml(tmp_path: Path) -> None:
    error = rejected([], write(tmp_path, "train:\n  stepz: 3\n"))
    assert error.key == "train.stepz" and "steps" in str(error)


def test_unknown_key_message_lists_allowed_keys() -> None:
    error = rejected(["train.colour=red"])
    assert error.key == "train.colour"
    assert "micro_batch_size" in str(error)


def test_unknown_section_in_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "trian:\n  steps: 3\n")
    error = rejected([], path)
    assert error.key == "trian"
    assert str(path) in str(error) and "allowed: checkpoint, data, eval" in str(error)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    error = rejected([], path)
    assert error.key == str(path) and "no such config file" in str(error)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "train: [steps\n")
    error = rejected([], path)
    assert error.key == str(path) and "not valid YAML" in str(error)


def test_yaml_top_level_list(tmp_path: Path) -> None:
    path = write(tmp_path, "- train\n- model\n")
    error = rejected([], path)
    assert error.key == str(path) and "mapping of sections" in str(error)


def test_yaml_section_not_a_mapping(tmp_path: Path) -> None:
    error = rejected([], write(tmp_path, "train: 3\n"))
    assert error.key == "train"
    assert "mapping" in str(error)


def test_wrong_type_in_yaml(tmp_path: Path) -> None:
    error = rejected([], write(tmp_path, "train:\n  micro_batch_size: many\n"))
    assert error.key == "train.micro_batch_size"


def test_check_world_size() -> None:
    config = load_config(None, ["train.micro_batch_size=4", "train.global_batch_size=48"])
    assert check_world_size(config, 1) == 12
    assert check_world_size(config, 3) == 4
    with pytest.raises(ConfigError) as info:
        check_world_size(config, 5)
    assert info.value.key == "train.global_batch_size"
    assert "world size (5)" in str(info.value) and "= 20" in str(info.value)


def test_a_bare_key_suggests_its_section():
    with pytest.raises(ConfigError, match="did you mean train.steps"):
        load_config(None, ["steps=10"])


def test_a_yaml_error_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  steps: [1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not valid YAML")
    assert "<unicode string>" not in str(info.value) and f'in "{path}", line 2' in str(info.value)


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\\\b"])
def test_a_run_name_must_be_one_plain_folder_name(name):
    with pytest.raises(ConfigError, match="run.name: .* it must be one plain folder name"):
        load_config(None, [f"run.name={name}"])


def test_old_recompute_names_still_work_with_a_warning(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("train:\n  activation_checkpointing: every_k\n")
    with pytest.warns(FutureWarning, match=r"train.activation_checkpointing \(in .*old.yaml\)"):
        config = load_config(path, [])
    assert config.train.recompute == "every_k"
    with pytest.warns(FutureWarning, match="train.checkpoint_every_k.*train.recompute_every_k"):
        config = load_config(None, ["train.checkpoint_every_k=3"])
    assert config.train.recompute_every_k == 3


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (REPO / "configs").rglob("*.yaml") if "sweeps" not in p.parts),
    ids=lambda p: str(p.relative_to(REPO / "configs")),
)
def test_every_shipped_config_and_fragment_validates(path: Path) -> None:
    """A whole config alone, a fragment (data, recipes) after the quickstart's."""
    load_config([REPO / "configs" / "quickstart.yaml", path])
