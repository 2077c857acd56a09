"""Bad situations a user meets, end to end through `ancre train`: a message, nothing lost.

Each test runs the real command (in this process when it refuses the input before it
starts anything, else in a subprocess) and checks the exit code, that the message names
the key, file or owner and what to do, and that nothing on disk changed that the user
did not ask to change (the whole tree is hashed before and after).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ancre.run_folder import RunFolder
from ancre.train.evaluation import perplexity
from tests.conftest import REPO, SAMPLE
from tests.helpers.small_disk import UNSHARE, can_mount_tmpfs
from tests.helpers.training import cli_error, run_ancre, train_args

CONFIG = str(REPO / "configs/quickstart.yaml")


def tree(path: Path) -> dict[str, str]:
    """Every file and folder under ``path`` with its content hash: what 'unchanged' means."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(path.rglob("*"))
    }


def ancre(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return run_ancre(*args, env=env, timeout=timeout)


def settings(out: Path, tokenizer: Path | str, *extra: str) -> list[str]:
    """The tests' tiny run, shortened to 4 steps with checkpoints at 2 and 4."""
    return train_args(
        out, "run", tokenizer, "train.steps=4", "train.warmup_steps=1",
        "train.global_batch_size=4", "eval.every=50", "eval.tokens=512", "checkpoint.every=2",
        *extra,
    )  # fmt: skip


def copy_of_sample(tmp_path: Path, pattern: str = "c4-*.json.gz") -> Path:
    """A copy of the sample corpus's shards, to damage or extend."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for shard in SAMPLE.glob(pattern):
        shutil.copy(shard, corpus / shard.name)
    return corpus


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ancre train: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


# --- refused before anything is written (no training needed) ---


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """run.out_dir holding another run and a file of the user's, which must survive."""
    out = tmp_path / "runs"
    (out / "other-run" / "checkpoints").mkdir(parents=True)
    (out / "other-run" / "metrics.jsonl").write_text('{"step": 1}\n')
    (tmp_path / "notes.txt").write_text("mine")
    return out


@pytest.mark.parametrize(
    ("name", "problem"),
    [("..", "is a reference to a folder"), ("''", "is empty")],  # the others: test_config
)  # fmt: skip
def test_a_run_name_that_is_not_one_folder_name_deletes_nothing(
    out_dir, tmp_path, capsys, name, problem
):
    before = tree(tmp_path)
    config = tmp_path / "named.yaml"
    config.write_text(f"run:\n  name: {name}\n  overwrite: true\n")
    message = cli_error(
        capsys, "train", CONFIG, str(config), f"run.out_dir={out_dir}", "model.num_heads=7"
    )
    assert f"run.name: {name.strip(chr(39))!r} {problem}" in message
    assert tree(tmp_path) == {**before, "named.yaml": tree(tmp_path)["named.yaml"]}


def test_a_bad_model_shape_is_reported_before_the_folder_is_touched(
    out_dir, tmp_path, capsys, sample_tokenizer
):
    before = tree(tmp_path)
    message = cli_error(
        capsys, "train", *settings(out_dir, sample_tokenizer.path, "run.name=other-run",
                                   "run.overwrite=true", "model.num_heads=7"),
    )  # fmt: skip
    assert "model.num_heads: 7 heads do not divide model.hidden_size=128" in message
    assert tree(tmp_path) == before


def test_a_folder_that_is_not_an_ancre_run_is_never_written_into(
    out_dir, tmp_path, subprocess_env, sample_tokenizer
):
    mine = out_dir / "mine"
    mine.mkdir()
    (mine / "metrics.jsonl").write_text("my own numbers\n")
    before = tree(tmp_path)
    for extra in ("run.overwrite=true", "checkpoint.resume=auto"):
        result = ancre(
            "train", *settings(out_dir, sample_tokenizer.path, "run.name=mine", extra),
            env=subprocess_env,
        )  # fmt: skip
        assert "is not an ancre run folder" in one_line_error(result)
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.text_field=body", "data.text_field='body': none of the first"),
        ("data.tokenizer={junk}", "neither a sentencepiece model nor a tokenizers JSON"),
        ("data.path={missing}", "does not exist"),
        ("model.init_from={missing}", "model.init_from: is"),
        ("model.init_from={junk_folder}", "expected ancre-pretrained-v1"),
    ],
)
def test_bad_data_settings_are_one_line_errors_naming_the_key(
    tmp_path, capsys, sample_tokenizer, override, expected
):
    junk = tmp_path / "junk.model"
    junk.write_text("not a model")
    junk_folder = tmp_path / "not_a_conversion"  # the names of a conversion, other weights
    junk_folder.mkdir()
    save_file({"w": torch.zeros(2)}, str(junk_folder / "model.safetensors"))
    (junk_folder / "config.yaml").write_text("model: {}\n")
    override = override.format(junk=junk, missing=tmp_path / "missing", junk_folder=junk_folder)
    message = cli_error(capsys, "train", *settings(tmp_path / "runs", sample_tokenizer.path,
                                                   override))  # fmt: skip
    assert expected in message
    assert not (tmp_path / "runs").exists()


def test_a_validation_split_shorter_than_one_sequence_leaves_no_folder(
    tmp_path, subprocess_env, sample_tokenizer
):
    corpus = copy_of_sample(tmp_path, "c4-train*.json.gz")
    (corpus / "c4-validation.00000-of-00001.jsonl").write_text('{"text": "too short"}\n')
    result = ancre(
        "train", *settings(tmp_path / "runs", sample_tokenizer.path, f"data.path={corpus}"),
        env=subprocess_env,
    )  # fmt: skip
    message = one_line_error(result)
    assert (
        "the validation split holds fewer than 65 tokens" in message and "data.seq_len" in message
    )
    assert not (tmp_path / "runs").exists()


def test_no_shipped_config_starts_over_by_itself():
    for path in REPO.glob("configs/**/*.yaml"):
        assert "overwrite: true" not in path.read_text(), path


def test_perplexity_of_a_diverged_model_is_inf_not_a_crash():
    assert perplexity(1e6) == float("inf")
    assert perplexity(0.0) == 1.0


# --- with a trained run ---


@pytest.fixture(scope="module")
def trained(tmp_path_factory, subprocess_env, sample_tokenizer):
    """A finished 4-step run with checkpoints at steps 2 and 4; tests work on copies."""
    out = tmp_path_factory.mktemp("trained")
    result = ancre("train", *settings(out, sample_tokenizer.path), env=subprocess_env)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "run"


@pytest.fixture
def run_copy(trained, tmp_path) -> RunFolder:
    shutil.copytree(trained, tmp_path / "runs" / "run")
    return RunFolder(tmp_path / "runs" / "run")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "expected", "advised"),
    [
        (lambda run: run.latest_file.write_bytes(b"\x00garbage"), "names no checkpoint folder", 4),
        (lambda run: (run.checkpoint_folder(4) / "manifest.json").write_text('{"format": 1}'),
         "format 1 version None", 2),
        (lambda run: (run.checkpoint_folder(4) / "manifest.json").write_text(
            json.dumps({"format": "ancre-checkpoint", "version": 1, "step": 4})),
         "lacks the keys", 2),
    ],
    ids=["garbage-latest", "foreign-manifest", "manifest-without-keys"],
)  # fmt: skip
def test_a_damaged_checkpoint_says_how_to_resume_from_an_older_one(
    run_copy, subprocess_env, sample_tokenizer, damage, expected, advised
):
    damage(run_copy)
    before = tree(run_copy.root)
    result = ancre(
        "train", *settings(run_copy.root.parent, sample_tokenizer.path, "train.steps=6"),
        env=subprocess_env,
    )  # fmt: skip
    message = one_line_error(result)
    assert expected in message
    assert f"checkpoint.resume={run_copy.checkpoint_folder(advised)}" in message
    assert tree(run_copy.root) == before


def rewrite_listed(checkpoint: Path, name: str, content: bytes) -> None:
    """Rewrites one file of a checkpoint and its manifest entry (it still verifies)."""
    (checkpoint / name).write_bytes(content)
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"][name] = {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.slow
def test_a_rank_file_of_an_unknown_format_is_refused_before_the_folder_is_touched(
    run_copy, subprocess_env, sample_tokenizer
):
    checkpoint = run_copy.checkpoint_folder(4)
    state = json.loads((checkpoint / "ranks/rank_00000.json").read_text())
    state["data"]["format"] = "someone-else"
    rewrite_listed(checkpoint, "ranks/rank_00000.json", json.dumps(state).encode())
    before = tree(run_copy.root)
    result = ancre(
        "train", *settings(run_copy.root.parent, sample_tokenizer.path, "train.steps=6"),
        env=subprocess_env,
    )  # fmt: skip
    message = one_line_error(result)
    assert "ranks/rank_00000.json: the data position is format 'someone-else'" in message
    assert tree(run_copy.root) == before


@pytest.mark.slow
def test_resuming_another_model_is_refused_naming_the_keys(
    run_copy, subprocess_env, sample_tokenizer
):
    before = tree(run_copy.root)
    result = ancre(
        "train", *settings(run_copy.root.parent, sample_tokenizer.path, "train.steps=6",
                           "model.num_layers=8", "topology.kind=uniform"),
        env=subprocess_env,
    )  # fmt: skip
    message = one_line_error(result)
    assert (
        "model.num_layers: None -> 8" in message
        and "topology.kind: 'ancre' -> 'uniform'" in message
    )
    assert "run.name" in message and "model.init_from" in message
    assert tree(run_copy.root) == before


@pytest.mark.slow
def test_resuming_an_older_checkpoint_sets_newer_ones_aside(
    run_copy, subprocess_env, sample_tokenizer
):
    newer = tree(run_copy.checkpoint_folder(4))
    older = run_copy.checkpoint_folder(2)
    args = settings(run_copy.root.parent, sample_tokenizer.path, f"checkpoint.resume={older}")
    result = ancre("train", *args, "train.lr=1e-3", "eval.every=2", env=subprocess_env)
    assert result.returncode == 0, result.stderr[-3000:]
    aside = next(run_copy.superseded_dir.iterdir())
    assert tree(aside / "checkpoints" / "step_00000004") == newer  # kept, byte for byte
    assert f"to {aside}" in result.stderr
    assert "train.lr: 0.003 -> 0.001" in result.stderr and "will not equal" in result.stderr
    assert "eval.every: 50 -> 2" in result.stderr


@pytest.mark.slow
def test_a_second_job_on_the_same_folder_is_refused_naming_the_owner(
    tmp_path, subprocess_env, sample_tokenizer
):
    args = settings(tmp_path, sample_tokenizer.path, "train.steps=400", "checkpoint.every=0")
    first = subprocess.Popen(
        [sys.executable, "-m", "ancre.cli", "train", *args], env=subprocess_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not metrics.exists() or metrics.stat().st_size == 0:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        before = metrics.read_text()
        second = ancre("train", *args, env=subprocess_env)
        message = one_line_error(second)
        assert f"is in use by another job: pid {first.pid} on host" in message
        assert "run.lock" in message
        assert metrics.read_text().startswith(before)  # the first run's records, not doubled
    finally:
        first.terminate()
        first.wait(timeout=120)
    assert first.returncode == 5  # stopped by SIGTERM, with a checkpoint


@pytest.mark.slow
def test_poison_lines_never_stop_training_or_tokenizer_training(tmp_path, subprocess_env):
    corpus = copy_of_sample(tmp_path)
    poison = [
        b'{"text": "a lone surrogate \\ud800 in the text"}',
        b"[" * 200_000 + b"]" * 200_000,
        b'{"text": "fine", "n": ' + b"7" * 5000 + b"}",
    ]
    good = [
        json.dumps({"text": f"Document {i}: the river and the stone."}).encode() for i in range(3)
    ]
    (corpus / "c4-train.00000-a-poison.jsonl").write_bytes(b"\n".join(good + poison + good) + b"\n")
    (corpus / "c4-train.00000-b-empty.json.gz").write_bytes(b"")
    result = ancre(
        "train", *settings(tmp_path, "null", f"data.path={corpus}", "data.shuffle=false",
                           "data.tokenizer_vocab_size=512"),
        env=subprocess_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tokenizer training skipped" in result.stderr  # counted there too
    last = [json.loads(ln) for ln in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in last if "data_skipped" in r][-1]["data_skipped"]
    assert skipped["invalid_text"] == 1 and skipped["malformed_json"] == 2
    assert skipped["unreadable_file"] == 1
    assert "c4-train.00000-a-poison.jsonl:4 (invalid_text)" in result.stderr


@pytest.mark.slow
def test_shards_added_after_a_checkpoint_join_and_removed_ones_are_refused(
    tmp_path, subprocess_env, sample_tokenizer
):
    corpus = copy_of_sample(tmp_path)
    args = settings(tmp_path, sample_tokenizer.path, f"data.path={corpus}")
    assert ancre("train", *args, env=subprocess_env).returncode == 0
    extra = corpus / "c4-train.00009-of-00009.json.gz"
    extra.write_bytes(gzip.compress(b'{"text": "a new document"}\n'))
    added = ancre("train", *args, "train.steps=6", env=subprocess_env)
    assert added.returncode == 0, added.stderr[-3000:]
    assert "1 shard(s) added (c4-train.00009-of-00009.json.gz)" in added.stderr
    run = RunFolder(tmp_path / "run")
    state = json.loads((run.checkpoint_folder(6) / "ranks/rank_00000.json").read_text())
    position = state["data"]["readers"][0]["position"]
    needed = sorted(corpus.glob("c4-train.*"))
    (corpus / position["shard"]).unlink()  # the shard the reader is in
    before = tree(run.root)
    refused = ancre("train", *args, "train.steps=8", env=subprocess_env)
    assert "the current epoch has still to read" in one_line_error(refused)
    assert position["shard"] in refused.stderr and len(needed) == 5
    assert tree(run.root) == before


@pytest.mark.slow
def test_convert_refuses_to_write_into_its_checkpoint_or_over_other_files(
    trained, tmp_path, subprocess_env
):
    folder = RunFolder(trained).checkpoint_folder(4)
    before = tree(folder)
    inside = ancre("convert", str(folder), str(folder / "export"), env=subprocess_env)
    assert (
        inside.returncode == 2
        and "is inside" in inside.stderr
        and "manifest would no longer verify" in inside.stderr
    )
    assert tree(folder) == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "paper.tex").write_text("draft")
    over = ancre("convert", str(folder), str(other), env=subprocess_env)
    assert over.returncode == 2 and "paper.tex" in over.stderr
    assert (other / "paper.tex").read_text() == "draft"


@pytest.mark.slow
@pytest.mark.skipif(not can_mount_tmpfs(), reason="cannot mount a small tmpfs (unshare)")
def test_a_full_disk_stops_the_run_naming_the_folder_and_keeping_the_checkpoint(
    tmp_path, subprocess_env, sample_tokenizer
):
    """The run folder on a 30 MB tmpfs: the first checkpoints fit, a later one does not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    args = settings(disk, sample_tokenizer.path, "train.steps=40", "checkpoint.every=2",
                    "checkpoint.topology_every=0", "eval.tokens=256")  # fmt: skip
    inner = " ".join(f"'{a}'" for a in [sys.executable, "-m", "ancre.cli", "train", *args])
    script = (
        f"mount -t tmpfs -o size=30m tmpfs {disk} && {inner}; echo exit=$?; "
        f"cat {disk}/run/checkpoints/latest > {tmp_path}/latest.txt"
    )
    result = subprocess.run(UNSHARE + ["sh", "-c", script], capture_output=True, text=True,
                            env=subprocess_env, timeout=600)  # fmt: skip
    assert "exit=6" in result.stdout, result.stderr[-3000:]
    assert "ancre train: stopped: the disk holding" in result.stderr
    assert "No space left on device" in result.stderr
    latest = (tmp_path / "latest.txt").read_text().strip()
    assert (
        latest.startswith("step_")
        and f"the last complete checkpoint, {disk}/run/checkpoints/{latest}, is intact"
        in result.stderr
    )
