"""ancre ablate: each connection removed on its own, the prunings, the rank correlation,
and the kinds it refuses; on a model built here and on a trained run."""

from __future__ import annotations

import json

import pytest
import torch

from ancre.cli import main
from ancre.config import ConfigError, load_config
from ancre.model.transformer import build_model
from ancre.train.ablation import ablate, check_ablatable, connections_of, spearman
from ancre.train.ablation_passes import edited_losses
from tests.helpers.training import QUICKSTART, cli_error, run_ancre, train_args, train_run


def tiny(kind: str, *extra: str):
    config = load_config(QUICKSTART, ["model.num_layers=3", f"topology.kind={kind}", *extra])
    torch.manual_seed(0)
    return build_model(config, 64).eval()


def batch():
    torch.manual_seed(1)
    tokens = torch.randint(0, 64, (4, 17))
    return tokens[:, :-1], tokens[:, 1:]


def own_forward_loss(model, inputs, targets, override: str, value) -> float:
    """The model's own forward pass (its real mix) with one topology method overridden."""
    setattr(model.topology, override, lambda: value)  # an instance override
    try:
        with torch.no_grad():
            total = float(model(inputs, targets, reduction="sum"))
    finally:
        delattr(model.topology, override)
    return total / targets.numel()


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("ancre", ()), ("denseformer", ()), ("ancre", ("model.value_residual=true",))],
    ids=["ancre", "denseformer", "ancre-value-residual"],
)
def test_shared_passes_give_each_wiring_the_loss_of_its_own_forward_pass(kind, extra) -> None:
    model = tiny(kind, *extra)
    if kind == "denseformer":  # every average weight non-zero, as after training
        with torch.no_grad():
            model.topology.alpha.add_(0.3 * torch.rand_like(model.topology.alpha))
    inputs, targets = batch()
    found = connections_of(model)
    override = "reads_matrix" if kind == "denseformer" else "weights"
    edited = found.weights.clone()
    edited[2, 1] = 0.0  # one connection of the last row: blocks 0 and 1 are shared
    first = found.weights.clone()
    first[0, 0] = 0.0  # row 0: nothing is shared
    edits = {"intact": found.weights, "last": edited, "first": first}
    for stack in (1, 4):
        losses = edited_losses(model, inputs, targets,
                               {n: found.reads(w) for n, w in edits.items()}, 2, stack)  # fmt: skip
        for name, weights in edits.items():
            value = found.reads(weights) if kind == "denseformer" else weights
            expected = own_forward_loss(model, inputs, targets, override, value)
            assert losses[name] == pytest.approx(expected, rel=1e-6), (name, stack)
    assert losses["last"] != losses["intact"] != losses["first"]


@pytest.mark.parametrize("renormalise", [False, True])
def test_every_connection_is_removed_once_and_top_l_changes_nothing(renormalise) -> None:
    model = tiny("uniform")
    inputs, targets = batch()
    base, singles, prunings = ablate(model, inputs, targets, 2, renormalise)
    assert [(a.row, a.column) for a in singles] == [(j, i) for j in range(3) for i in range(j + 1)]
    assert all(a.delta == pytest.approx(a.loss - base) for a in singles)
    assert [p.column for p in prunings] == [1, 2, 3]
    assert prunings[-1].delta == 0.0 and prunings[-1].mass == 0.0  # k = L keeps every entry
    if renormalise:  # row 0 holds one connection: rescaling an empty row leaves it empty
        assert singles[0].mass == 1.0


def test_denseformer_connections_are_its_average_weights() -> None:
    model = tiny("denseformer")
    inputs, targets = batch()
    base, singles, _ = ablate(model, inputs, targets, 2)
    # at initialisation every average is the block's own output alone: its removal matters
    assert [(a.row, a.column, a.mass) for a in singles] == [(j, j + 1, 1.0) for j in range(3)]
    assert all(a.delta != 0.0 for a in singles)


def test_spearman_ranks() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [5, 5, 6]) == pytest.approx(1.0)  # ties share a rank


def test_attnres_sources_are_removed_inside_or_after_the_softmax() -> None:
    model = tiny("attnres")
    with torch.no_grad():
        model.topology.queries.normal_(0.0, 1.0)
    inputs, targets = batch()
    plain = ablate(model, inputs, targets, 2)
    rescaled = ablate(model, inputs, targets, 2, renormalise=True)
    # reading j attends over v_0 .. v_{j+1}: 2 + 3 + 4 sources for 3 blocks
    assert len(plain[1]) == len(rescaled[1]) == 9
    assert plain[0] == rescaled[0]  # the intact model is the same
    assert all(a.loss != b.loss for a, b in zip(plain[1], rescaled[1], strict=True))
    assert abs(sum(a.mass for a in plain[1] if a.row == 0) - 1.0) < 1e-6  # a softmax
    assert plain[2][-1].delta == 0.0  # top L keeps every source
    assert model.topology.removed is None  # put back


@pytest.mark.parametrize(
    ("kind", "frozen", "error"),
    [
        ("cascaded", False, "there is nothing to ablate"),
        ("hyper", False, "computes its own weights"),
        ("ancre", True, "froze this model's matrix"),
    ],
)
def test_what_cannot_be_ablated_is_refused(kind, frozen, error) -> None:
    with pytest.raises(ConfigError, match=error):
        check_ablatable(kind, frozen)


@pytest.mark.slow
def test_ablate_a_trained_run(tmp_path, capsys, subprocess_env, sample_tokenizer) -> None:
    train_run(*train_args(tmp_path, "a", sample_tokenizer.path), env=subprocess_env)
    out = tmp_path / "ablation.json"
    result = run_ancre(
        "ablate", str(tmp_path / "a"), "--tokens", "256", "--json", str(out), env=subprocess_env
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert len(saved["connections"]) == 6 * 7 // 2 and saved["step"] == 8
    assert -1.0 <= saved["spearman_mass_delta"] <= 1.0
    assert "Spearman rank correlation of mass and delta over 21 connections" in result.stdout
    beside = tmp_path / "a" / "checkpoints" / "step_00000008.ablation.json"
    assert json.loads(beside.read_text()) == saved  # where ancre viz finds it
    report = tmp_path / "report"
    assert main(["viz", str(tmp_path / "a"), "--out", str(report)]) == 0
    page = (report / "report.html").read_text()
    assert "Which connections matter (ancre ablate)" in page
    assert f"{saved['spearman_mass_delta']:.3f}" in page and (report / "ablation.png").exists()
    train_run(*train_args(tmp_path, "c", sample_tokenizer.path, "topology.kind=cascaded"),
              env=subprocess_env)  # fmt: skip
    line = cli_error(capsys, "ablate", str(tmp_path / "c"))
    assert "topology.kind: is cascaded" in line and "nothing to ablate" in line
