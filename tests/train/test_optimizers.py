"""The optimisers of train.optimizer: groups, Adam-atan2, exact resume and skipped steps."""

from __future__ import annotations

import math

import pytest
import torch

from ancre.config import ConfigError, load_config
from ancre.model import build_model
from ancre.train.optimizers import AdamAtan2, FiniteAdamAtan2, build_optimizer, parameter_groups
from tests.conftest import REPO
from tests.helpers.training import records, run_ancre, train_args


def adam_atan2_by_hand(grads: list[float], lr: float, betas, a: float, b: float) -> list[float]:
    """The parameter after each step, from the formula written out in plain floats."""
    p, m, v, out = 1.0, 0.0, 0.0, []
    for t, g in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        p -= lr * a * math.atan2(m_hat, b * math.sqrt(v_hat))
        out.append(p)
    return out


def run_steps(optimizer_class, grads: list[float], **kwargs) -> list[float]:
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    optimizer = optimizer_class([p], **kwargs)
    out = []
    for g in grads:
        p.grad = torch.tensor([g], dtype=torch.float64)
        optimizer.step()
        out.append(float(p.detach()))
    return out


def test_adam_atan2_follows_its_formula() -> None:
    grads = [0.5, -2.0, 0.0, 3e-9, 7.0]
    got = run_steps(AdamAtan2, grads, lr=0.1, betas=(0.8, 0.95), a=1.27, b=1.5)
    assert got == pytest.approx(adam_atan2_by_hand(grads, 0.1, (0.8, 0.95), 1.27, 1.5), rel=1e-12)


def test_adam_atan2_is_invariant_to_the_gradient_scale_and_needs_no_epsilon() -> None:
    grads = [0.5, -2.0, 1.0, 0.25]
    base = run_steps(AdamAtan2, grads, lr=0.01)
    for scale in (1e-30, 1e-12, 1e12):
        assert run_steps(AdamAtan2, [g * scale for g in grads], lr=0.01) == pytest.approx(base)
    assert run_steps(AdamAtan2, [0.0, 0.0], lr=0.01) == [1.0, 1.0]  # atan2(0, 0) = 0, no NaN


def test_a_flagged_step_changes_nothing() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = FiniteAdamAtan2([p], lr=0.1)
    p.grad = torch.full((3,), float("nan"))
    optimizer.overflow = True
    optimizer.step()
    assert torch.equal(p.detach(), torch.ones(3)) and not optimizer.state


def config(*overrides: str):
    return load_config(REPO / "configs/quickstart.yaml", ["data.seq_len=32", *overrides])


def test_muon_takes_the_block_matrices_and_adamw_the_rest() -> None:
    model = build_model(config("train.optimizer=muon"), vocab_size=64)
    groups = {g["name"]: g for g in parameter_groups(model, config("train.optimizer=muon"))}
    names = dict(model.named_parameters())
    name_of = {id(p): n for n, p in names.items()}
    in_group = {name: sorted(name_of[id(p)] for p in g["params"]) for name, g in groups.items()}
    blocks = sorted(
        n for n, p in model.named_parameters() if n.startswith("blocks.") and p.ndim == 2
    )
    assert in_group["matrices"] == blocks and groups["matrices"]["use_muon"]
    assert in_group["weights"] == ["embed.weight", "head.weight"]
    assert in_group["topology"] == ["topology.logits"]
    assert not any(groups[g]["use_muon"] for g in ("weights", "norms", "topology"))
    assert groups["matrices"]["peak_lr"] == 0.02 and groups["weights"]["peak_lr"] == 3e-3
    assert all(p.use_muon == (n in blocks) for n, p in names.items())


def test_adamw_groups_are_unchanged_and_a_frozen_parameter_is_in_none() -> None:
    model = build_model(config(), vocab_size=64)
    model.topology.logits.requires_grad_(False)
    optimizer = build_optimizer(model, config(), muon=None)  # type: ignore[arg-type]
    assert [g["name"] for g in optimizer.param_groups] == ["weights", "norms"]
    assert all(p is not model.topology.logits for g in optimizer.param_groups for p in g["params"])


def test_muon_under_zero_with_clipping_is_refused_with_what_works() -> None:
    with pytest.raises(ConfigError) as caught:
        config("train.optimizer=muon", "train.zero_stage=2")
    assert caught.value.key == "train.grad_clip" and "train.zero_stage=0" in str(caught.value)
    config("train.optimizer=muon", "train.zero_stage=2", "train.grad_clip=0")
    config("train.optimizer=muon", "train.zero_stage=0")
    with pytest.raises(ConfigError, match="train.optimizer: is 'sgd'"):
        config("train.optimizer=sgd")


# --- exact resume and skipped steps, for each optimiser (real DeepSpeed, subprocesses) ---

OPTIMIZERS = [
    ("adam_atan2", 0, ()),
    ("adam_atan2", 2, ()),
    ("muon", 0, ()),
    ("muon", 2, ("train.grad_clip=0",)),
]


@pytest.fixture(scope="module", params=OPTIMIZERS, ids=lambda p: f"{p[0]}-zero{p[1]}")
def optimizer_run(request, tmp_path_factory, subprocess_env, sample_tokenizer):
    """An uninterrupted 8-step run with checkpoints at steps 4 and 8."""
    name, zero, extra = request.param
    out = tmp_path_factory.mktemp(name)
    args = train_args(
        out, "ref", sample_tokenizer.path, f"train.optimizer={name}", f"train.zero_stage={zero}",
        *extra,
    )  # fmt: skip
    result = run_ancre("train", *args, env=subprocess_env)
    assert result.returncode == 0, result.stderr[-4000:]
    return name, zero, out / "ref", args


@pytest.mark.slow
def test_resumed_run_equals_the_uninterrupted_one(optimizer_run, subprocess_env, tmp_path):
    _, _, run_dir, args = optimizer_run
    middle = run_dir / "checkpoints" / "step_00000004"
    resumed = [*args, f"run.out_dir={tmp_path}", f"checkpoint.resume={middle}"]
    result = run_ancre("train", *resumed, env=subprocess_env)
    assert result.returncode == 0, result.stderr[-4000:]
    expected = [r for r in records(run_dir) if r["step"] > 4]
    assert records(tmp_path / "ref") == expected and len(expected) == 6  # + stream stats at 8
    losses = [r["loss"] for r in records(run_dir) if "loss" in r]
    assert losses[0] > losses[-1]  # it learns


@pytest.mark.slow
def test_non_finite_steps_are_skipped_without_zero(optimizer_run, subprocess_env, tmp_path):
    name, zero, run_dir, args = optimizer_run
    if zero:
        pytest.skip("ZeRO optimisers skip non-finite steps themselves (tests/train/test_resume.py)")
    middle = run_dir / "checkpoints" / "step_00000004"
    blowup = [
        *args, f"run.out_dir={tmp_path}", f"checkpoint.resume={middle}", "train.steps=30",
        "train.lr=1e30", "train.muon_lr=1e30", "train.max_bad_steps=3",
    ]  # fmt: skip
    result = run_ancre("train", *blowup, env=subprocess_env)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "3 steps in a row (up to step 8)" in result.stderr
    logged = records(tmp_path / "ref")
    assert [r.get("skipped_steps") for r in logged if r["step"] in (6, 7)] == [1, 2]
