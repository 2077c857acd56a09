"""Sweeps: expansion (grid, zip, template), refusals, dry run, SLURM script, a real sweep."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from ancre.sweep import SweepError, load_sweep, slurm_array_script
from tests.conftest import REPO, SAMPLE
from tests.helpers.training import run_ancre


def sweep_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"out_dir: {tmp_path / 'out'}\nbase: {REPO / 'configs/quickstart.yaml'}\n{body}"
    )
    return path


def ancre_sweep(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_ancre("sweep", *args, env=env, cwd=REPO)


def test_grid_is_a_cartesian_product_and_zip_pairs(tmp_path):
    sweep = load_sweep(
        sweep_file(
            tmp_path,
            """
name: demo
overrides: {train.steps: 70}
grid:
  topology.kind: [cascaded, ancre]
  train.lr: [1.0e-3, 3.0e-3, 0.01]
zip:
  model.hidden_size: [128, 192]
  model.num_layers: [6, 8]
run_name: "{topology.kind}-d{model.hidden_size}x{model.num_layers}-lr{train.lr}"
""",
        )
    )
    assert sweep.name == "demo" and sweep.folder == tmp_path / "out" / "demo"
    assert len(sweep.runs) == 2 * 3 * 2
    first, last = sweep.runs[0], sweep.runs[-1]
    assert first.name == "cascaded-d128x6-lr0.001"
    assert last.name == "ancre-d192x8-lr0.01"
    assert {(r.config.model.hidden_size, r.config.model.num_layers) for r in sweep.runs} == {
        (128, 6),
        (192, 8),
    }
    assert all(r.config.train.steps == 70 for r in sweep.runs)
    assert last.config.run.name == last.name and last.folder == sweep.folder / last.name
    assert last.overrides[-6:] == (
        f"run.name={last.name}", f"run.out_dir={sweep.folder}", "run.overwrite=false",
        "checkpoint.resume=auto", f"logging.wandb_group={sweep.name}",
        "logging.wandb_job_type='kind=ancre lr=0.01 hidden_size=192 num_layers=8'",
    )  # fmt: skip


def test_config_axis_and_format_specs_and_default_names(tmp_path):
    size = tmp_path / "small.yaml"
    size.write_text("model:\n  hidden_size: 64\n  num_heads: 2\n")
    sweep = load_sweep(
        sweep_file(
            tmp_path,
            f"""
grid:
  config: [{size}]
  train.lr: [0.002]
run_name: "{{config}}-lr{{train.lr:.0e}}"
""",
        )
    )
    (run,) = sweep.runs
    assert run.name == "small-lr2e-03" and run.config.model.hidden_size == 64
    assert run.files[-1] == str(size)
    unnamed = load_sweep(sweep_file(tmp_path, "grid:\n  topology.kind: [cascaded, uniform]\n"))
    assert [r.name for r in unnamed.runs] == ["cascaded", "uniform"]


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("grid:\n  train.stepz: [1, 2]\n", "train.stepz"),
        ("overrides: {modle.preset: tiny}\n", "modle"),
        ("grid:\n  topology.kind: [cascaded, dense]\n", "topology.kind"),
        ("grid:\n  train.lr: []\n", "grid.train.lr"),
        ("zip:\n  train.lr: [0.1, 0.2]\n  train.steps: [1, 2, 3]\n", "zip"),
        ("zip:\n  train.lr: []\n", "zip.train.lr"),
        ("grid:\n  train.lr: 0.1\n", "grid.train.lr"),
        ("grid:\n  run.name: [a, b]\n", "run.name"),
        ("overrides: {train.lr: 0.1}\ngrid:\n  train.lr: [0.2]\n", "train.lr"),
        ("grid:\n  train.lr: [0.1, 0.2]\nrun_name: same\n", "run_name"),
        ("grid:\n  train.lr: [0.1]\nrun_name: '{train.nope}'\n", "run_name"),
        ("gird:\n  train.lr: [0.1]\n", "gird"),
    ],
)
def test_bad_sweeps_are_refused_naming_the_key(tmp_path, body, key):
    with pytest.raises(SweepError) as error:
        load_sweep(sweep_file(tmp_path, body))
    assert error.value.key == key, str(error.value)


def test_a_bad_run_is_refused_before_any_run_starts(tmp_path, subprocess_env):
    path = sweep_file(tmp_path, "grid:\n  train.lr: [0.001, -1]\n")
    result = ancre_sweep(str(path), env=subprocess_env)
    assert result.returncode == 2
    assert "ancre sweep: error: train.lr:" in result.stderr and "train.lr=-1" in result.stderr
    assert not (tmp_path / "out").exists()


def test_inputs_of_every_run_are_checked_before_the_first_starts(
    tmp_path, subprocess_env, sample_tokenizer
):
    """Runs valid on their own, but a later one reads a missing data folder, another a
    tokenizer that is not one, another a model.init_from that is no conversion, and one
    a batch that does not split over --procs: the sweep names each and starts none."""
    not_a_model = tmp_path / "notes.model"
    not_a_model.write_text("not sentencepiece")
    tok = sample_tokenizer.path
    path = sweep_file(
        tmp_path,
        f"""
name: inputs
overrides:
  train.micro_batch_size: 4
zip:
  run.seed: [0, 1, 2, 3, 4]
  data.path: [{SAMPLE}, {tmp_path / "nowhere"}, {SAMPLE}, {SAMPLE}, {SAMPLE}]
  data.tokenizer: [{tok}, {tok}, {not_a_model}, {tok}, {tok}]
  model.init_from: [null, null, null, {tmp_path}, null]
  train.global_batch_size: [8, 8, 8, 8, 12]
run_name: "r{{run.seed}}"
""",
    )  # fmt: skip
    result = ancre_sweep(str(path), "--procs", "2", env=subprocess_env)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("ancre sweep: error:")]
    assert "4 run(s) of" in line and "Nothing was started" in line
    assert str(tmp_path / "nowhere") in line and str(not_a_model) in line
    assert "model.init_from" in line and "train.global_batch_size" in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "inputs").exists()


def test_dry_run_prints_every_run_with_its_overrides(tmp_path, subprocess_env):
    path = sweep_file(tmp_path, "name: dry\ngrid:\n  topology.kind: [cascaded, ancre]\n")
    result = ancre_sweep(str(path), "--dry-run", env=subprocess_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"sweep dry: 2 run(s) in {tmp_path / 'out' / 'dry'}"
    assert lines[1] == "[1/2] cascaded  (topology.kind=cascaded)"
    assert (
        "-m ancre.cli train" in lines[2] and "topology.kind=cascaded run.name=cascaded" in lines[2]
    )
    assert "checkpoint.resume=auto" in lines[4] and "topology.kind=ancre" in lines[4]
    assert not (tmp_path / "out").exists()


def test_shipped_sweeps_expand():
    small = load_sweep(REPO / "configs/sweeps/ancre_vs_cascaded.yaml")
    assert len(small.runs) == 8
    assert {r.config.model.hidden_size for r in small.runs} == {128, 192}
    paper = load_sweep(REPO / "configs/sweeps/paper.yaml")
    assert len(paper.runs) == 8
    by_name = {r.name: r.config for r in paper.runs}
    for size, lr, steps in [("60m", 5e-3, 10_000), ("130m", 1e-3, 20_000),
                            ("350m", 1e-3, 60_000), ("1b", 5e-4, 100_000)]:  # fmt: skip
        for kind in ("cascaded", "ancre"):
            config = by_name[f"{size}-{kind}"]
            assert config.topology.kind == kind and config.model.preset == size
            assert (config.train.lr, config.train.steps) == (lr, steps)
            assert config.train.warmup_steps == steps // 10
            assert config.train.global_batch_size == 512 and config.data.seq_len == 256
            assert config.train.precision == "bf16" and config.train.weight_decay == 0
            assert config.train.min_lr_ratio == 0.1
            assert config.data.tokenizer == "data/t5-base/spiece.model"
            assert config.data.path == "data/c4/en"


def test_emitted_sbatch_script(tmp_path, subprocess_env):
    path = sweep_file(tmp_path, "name: arr\ngrid:\n  topology.kind: [cascaded, ancre]\n")
    result = ancre_sweep(
        str(path), "--emit", "slurm", "--nodes", "2", "--gpus-per-node", "4", env=subprocess_env
    )
    assert result.returncode == 0, result.stderr
    script = (tmp_path / "out/arr/sweep.sbatch").read_text()
    sweep = load_sweep(path)
    assert script == slurm_array_script(sweep, str(path), nodes=2, gpus_per_node=4)
    assert "#SBATCH --array=0-1\n" in script and "#SBATCH --nodes=2\n" in script
    assert "#SBATCH --gpus-per-node=4\n" in script
    assert "    0) args=(" in script and "topology.kind=cascaded run.name=cascaded" in script
    assert "    1) args=(" in script and "run.name=ancre" in script
    assert 'exec bash launch/slurm.sbatch "${args[@]}"' in script
    assert subprocess.run(["bash", "-n", str(tmp_path / "out/arr/sweep.sbatch")]).returncode == 0


@pytest.mark.slow
def test_a_local_sweep_runs_summarises_and_skips_finished_runs(
    tmp_path, subprocess_env, sample_tokenizer
):
    path = sweep_file(
        tmp_path,
        f"""
name: tiny
overrides:
  data.path: {SAMPLE}
  data.tokenizer: {sample_tokenizer.path}
  data.seq_len: 64
  train.steps: 4
  train.warmup_steps: 1
  train.micro_batch_size: 4
  train.global_batch_size: 4
  train.log_every: 2
  eval.tokens: 1024
grid:
  topology.kind: [cascaded, ancre]
run_name: "{{topology.kind}}-s{{train.steps}}"
""",
    )
    result = ancre_sweep(str(path), env=subprocess_env)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = tmp_path / "out" / "tiny"
    for name in ("cascaded-s4", "ancre-s4"):
        assert (folder / name / "config.yaml").exists()
        assert (folder / name / "checkpoints" / "latest").exists()
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert [r["run"] for r in rows] == ["cascaded-s4", "ancre-s4"]
    assert all(r["status"] == "done" and r["step"] == "4" and r["tokens"] == "1024" for r in rows)
    assert all(float(r["val_loss"]) > 0 and float(r["val_ppl"]) > 1 for r in rows)
    assert all(float(r["wall_s"]) > 0 for r in rows)
    markdown = (folder / "summary.md").read_text()
    assert "| run | status | step | tokens | val_loss | val_ppl | wall_s |" in markdown
    assert "| cascaded-s4 | done | 4 | 1024 |" in markdown

    again = ancre_sweep(str(path), env=subprocess_env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished already, skipped") == 2
    assert list(csv.DictReader((folder / "summary.csv").open())) == rows

    # the sweep edited: its runs' folders hold other settings, never reported as these
    path.write_text(
        path.read_text().replace(
            "  train.log_every: 2\n", "  train.log_every: 2\n  train.lr: 2.0e-3\n"
        )
    )
    metrics = (folder / "ancre-s4" / "metrics.jsonl").read_bytes()
    edited = ancre_sweep(str(path), env=subprocess_env)
    assert edited.returncode == 2 and "Nothing was started" in edited.stderr
    assert "cascaded-s4 (train.lr: " in edited.stderr and "-> 0.002)" in edited.stderr
    assert "--rerun" in edited.stderr
    assert (folder / "ancre-s4" / "metrics.jsonl").read_bytes() == metrics
    summary = ancre_sweep(str(path), "--summary", env=subprocess_env)
    assert summary.returncode == 0
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert all(r["status"] == "other settings" and r["val_loss"] == "" for r in rows)
    rerun = ancre_sweep(str(path), "--rerun", env=subprocess_env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert all(r["status"] == "done" and float(r["val_loss"]) > 0 for r in rows)


def test_text_study_sweeps_expand():
    tau_lr = load_sweep(REPO / "configs/sweeps/text_tau_lr.yaml")
    assert len(tau_lr.runs) == 72
    shapes = {(r.config.model.hidden_size, r.config.model.num_layers) for r in tau_lr.runs}
    assert shapes == {(128, 6), (128, 12), (256, 6), (256, 12)}
    uniform = [r for r in tau_lr.runs if r.config.topology.kind == "uniform"]
    assert len(uniform) == 12  # once per shape and seed, not per tau and multiplier
    freeze = load_sweep(REPO / "configs/sweeps/text_freeze.yaml")
    variants = {(r.config.topology.freeze_at, r.config.topology.prune) for r in freeze.runs}
    assert sorted(variants) == [(0, "none"), (75, "top_k"), (150, "top_k")]
    assert all(r.config.topology.freeze_at < r.config.train.steps for r in freeze.runs)
    optimizers = load_sweep(REPO / "configs/sweeps/text_optimizers.yaml")
    assert {(r.config.train.optimizer, r.config.topology.kind) for r in optimizers.runs} == {
        (o, k) for o in ("adamw", "muon") for k in ("cascaded", "uniform", "ancre")
    }
    for sweep in (tau_lr, freeze, optimizers):
        assert len(sweep.runs) in (18, 72)
        assert all(r.config.data.path == "data/text" for r in sweep.runs)
        assert {r.config.run.seed for r in sweep.runs} == {0, 1, 2}
        # one scale for the three studies: 16 sequences of 64 tokens per step
        assert {(r.config.data.seq_len, r.config.train.global_batch_size) for r in sweep.runs} == {
            (64, 16)
        }


def test_the_zoo_sweeps_expand_and_an_empty_string_stays_one():
    depth = load_sweep(REPO / "configs/sweeps/zoo_depth24.yaml")
    assert len(depth.runs) == 36
    edges = {r.name: r.config.topology.edges for r in depth.runs}
    assert (
        edges["fixed-gated-d0-none-v0-s0"] == "x0" and edges["ancre-additive-d0-none-v0-s0"] == ""
    )
    assert {r.config.model.num_layers for r in depth.runs} == {24}
    second = load_sweep(REPO / "configs/sweeps/zoo_second_edition.yaml")
    assert [r.name for r in second.runs[:5]] == [
        "cascaded-additive-s0", "attnres-additive-s0", "attnres-delta-s0", "fixedx0-gated-s0",
        "fixedunet-gated-s0",
    ]  # fmt: skip
    options = load_sweep(REPO / "configs/sweeps/zoo_block_options.yaml")
    assert len(options.runs) == 21
    assert options.runs[-1].config.model.value_residual
