"""A weighted mixture in real runs (DeepSpeed, real shards): the validation loss of each
source in metrics.jsonl, their weighted mean as val_loss, and an exact resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ancre.data.sources import find_shards, iter_documents
from tests.helpers.training import SAMPLE, cli_error, records, train_args, train_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mix_config(tmp_path_factory) -> Path:
    """A two-source mixture: the sample corpus (weight 3) and its documents in reverse
    order under the key ``content`` (weight 1)."""
    root = tmp_path_factory.mktemp("mix")
    for split in ("train", "validation"):
        texts = list(iter_documents(find_shards(str(SAMPLE), split), "text", Counter()))
        lines = "".join(json.dumps({"content": t}) + "\n" for t in reversed(texts))
        (root / "reversed").mkdir(exist_ok=True)
        (root / "reversed" / f"c4-{split}.00000-of-00001.jsonl").write_text(lines)
    config = root / "mixture.yaml"
    config.write_text(
        "data:\n  sources:\n"
        f"    - {{name: sample, weight: 3, path: {SAMPLE}}}\n"
        f"    - {{name: reversed, weight: 1, path: {root / 'reversed'}, text_field: content}}\n"
    )
    return config


def args(out: Path, name: str, tokenizer: Path, config: Path, *extra: str) -> list[str]:
    return [*train_args(out, name, tokenizer, *extra), str(config)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, subprocess_env, sample_tokenizer, mix_config):
    """An 8-step mixture run, and the same run resumed again from its step-4 checkpoint."""
    out = tmp_path_factory.mktemp("runs")
    tokenizer = sample_tokenizer.path
    for name in ("whole", "resumed"):
        train_run(*args(out, name, tokenizer, mix_config), env=subprocess_env)
    again = f"checkpoint.resume={out / 'resumed' / 'checkpoints' / 'step_00000004'}"
    train_run(*args(out, "resumed", tokenizer, mix_config, again), env=subprocess_env)
    return out


def test_each_source_is_validated_apart_and_val_loss_weights_them(runs) -> None:
    evaluations = [r for r in records(runs / "whole") if "val_loss" in r]
    assert [r["step"] for r in evaluations] == [0, 4, 8]
    for record in evaluations:
        sample, backwards = record["val_loss/sample"], record["val_loss/reversed"]
        assert sample != backwards  # two validation sets
        assert record["val_loss"] == pytest.approx(0.75 * sample + 0.25 * backwards)
        assert record["val_tokens"] == record["val_tokens/sample"] + record["val_tokens/reversed"]


def test_a_mixture_resumes_exactly(runs) -> None:
    whole = [r for r in records(runs / "whole") if "loss" in r]
    steps = [r for r in records(runs / "resumed") if "loss" in r]
    assert steps == whole  # steps 5-8 trained again from the checkpoint: the same losses
    [earlier] = (runs / "resumed" / "superseded").glob("after_step_00000004_*")
    assert (earlier / "checkpoints" / "step_00000008").is_dir()  # what the resume redid


def test_another_mixture_is_refused_on_resume(
    tmp_path, capsys, runs, sample_tokenizer, mix_config
) -> None:
    resumed = runs / "resumed"
    heavier = tmp_path / "heavier.yaml"
    heavier.write_text(mix_config.read_text().replace("weight: 1", "weight: 2"))
    line = cli_error(
        capsys, "train",
        *args(runs, "resumed", sample_tokenizer.path, heavier, "train.steps=12"),
    )  # fmt: skip
    assert "data.sources" in line and "each source's place" in line
    assert resumed.joinpath("checkpoints", "step_00000008").is_dir()  # nothing touched
