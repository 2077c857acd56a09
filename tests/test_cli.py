"""The `ancre` command on bad input: a clear message naming the key, and exit code 2."""

import subprocess
import sys

import pytest


def ancre(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ancre.cli", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.global_batch_size=12", "train.global_batch_size"),
        ("topology.kind=dense", "topology.kind"),
        ("train.stepz=3", "train.stepz"),
        ("model.num_heads=5", "model.num_heads"),
    ],
)
def test_config_errors_name_the_key(override, key, subprocess_env, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"run:\n  out_dir: {tmp_path}\ntrain:\n  micro_batch_size: 8\n")
    result = ancre("train", str(config), override, env=subprocess_env)
    assert result.returncode == 2, result.stderr
    assert f"ancre train: error: {key}" in result.stderr


def test_missing_config_file_is_named(subprocess_env, tmp_path):
    result = ancre("train", str(tmp_path / "nope.yaml"), env=subprocess_env)
    assert result.returncode == 2
    assert "nope.yaml: no such config file" in result.stderr


def test_missing_data_path_says_what_to_do(subprocess_env, tmp_path):
    result = ancre(
        "train", "configs/quickstart.yaml", f"run.out_dir={tmp_path}",
        f"data.path={tmp_path}/missing", env=subprocess_env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "data.path=" in result.stderr and "does not exist" in result.stderr
