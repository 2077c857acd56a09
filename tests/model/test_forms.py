"""The forms of topology.form, checked through hooks; the plain residual as a special case."""

from __future__ import annotations

import math

import pytest
import torch

from ancre.config import ConfigError, load_config
from ancre.model import build_model
from ancre.model.topology.forms import mix_weights, predecessor_logits
from ancre.model.topology.freeze import FrozenWiring
from tests.helpers.zoo_models import VOCAB, capture, perturb, tiny_model

FORMS = ("additive", "replace", "gated")


def expected_next(form: str, j: int, seen, matrix: torch.Tensor, gates) -> torch.Tensor:
    """h_{j+1} from docs/method.md, from what the hooks saw (h_0 = embeddings)."""
    states = [seen.embeddings, *seen.inputs[1:]]  # h_0 .. h_{L-1}
    y, h = seen.outputs[j], states[j]
    mixed = sum(matrix[j, i] * states[i] for i in range(j + 1))
    if form == "additive":
        return y + mixed
    if form == "replace":
        return y - h + mixed
    return y + gates[j] * mixed


@pytest.mark.parametrize("kind", ["ancre", "uniform"])
@pytest.mark.parametrize("form", FORMS)
def test_each_form_computes_its_formula(kind, form):
    model = tiny_model(kind, layers=4, extra=(f"topology.form={form}",))
    perturb(model)  # logits and gates away from their initial values
    tokens = torch.randint(0, VOCAB, (2, 9))
    seen = capture(model, tokens)
    matrix = model.topology.matrix()
    gates = None if model.topology.gates is None else model.topology.gates.detach()
    for j in range(4):
        got = seen.inputs[j + 1] if j < 3 else seen.final
        want = expected_next(form, j, seen, matrix, gates)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_replace_form_with_a_one_hot_matrix_is_the_plain_residual_exactly():
    edges = "topology.edges=" + ",".join(f"{j}:{j + 1}" for j in range(4))  # P[j, j] = 1
    fixed = tiny_model("fixed", layers=4, extra=(edges, "topology.form=replace"))
    cascaded = tiny_model("cascaded", layers=4)
    tokens = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(fixed(tokens), cascaded(tokens), atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["ancre", "uniform"])
def test_gated_form_at_step_0_is_the_plain_residual_exactly(kind):
    gated = tiny_model(kind, layers=4, extra=("topology.form=gated",))
    cascaded = tiny_model("cascaded", layers=4)
    tokens = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(gated(tokens), cascaded(tokens), atol=0, rtol=0)


def test_gates_learn_from_step_0():
    model = tiny_model("ancre", layers=4, extra=("topology.form=gated",))
    tokens = torch.randint(0, VOCAB, (2, 9))
    model(tokens, tokens).backward()
    assert model.topology.gates.grad is not None
    assert bool((model.topology.gates.grad[1:] != 0).all())
    assert bool((model.topology.logits.grad == 0).all())  # g = 0: P does not matter yet


def test_predecessor_initialisation_weights_each_blocks_own_input():
    model = tiny_model(
        "ancre", layers=5, extra=("topology.form=replace", "topology.init=predecessor",
                                  "topology.predecessor_weight=0.8"),
    )  # fmt: skip
    matrix = model.topology.matrix()
    assert matrix[0, 0] == 1.0
    for j in range(1, 5):
        torch.testing.assert_close(matrix[j, j], torch.tensor(0.8))
        torch.testing.assert_close(matrix[j, :j], torch.full((j,), 0.2 / j))
    logits = predecessor_logits(5, 0.01, 0.8)
    assert logits.numel() == 5 * 6 // 2 - 1


@pytest.mark.parametrize("form", FORMS)
def test_frozen_wiring_mixes_like_the_dense_matrix(form):
    torch.manual_seed(0)
    matrix = torch.rand(4, 5).tril()
    matrix[1, 0] = matrix[2, 2] = 0.0  # pruned edges
    matrix = matrix / matrix.sum(1, keepdim=True)
    gates = torch.randn(4)
    wiring = FrozenWiring.of(matrix, form)
    weights = mix_weights(matrix, form, gates)
    states = [torch.randn(3, 8) for _ in range(4)]
    mixer = wiring.mixer(gates)
    for j in range(4):
        y = torch.randn(3, 8)
        want = y + sum(weights[j, i] * states[i] for i in range(j + 1))
        torch.testing.assert_close(mixer(j, y, states[: j + 1]), want)
    assert wiring.edges[1] == (1,) and wiring.edges[2] == (0, 1)
    assert wiring.mixed[2] == ((0, 1, 2) if form == "replace" else (0, 1))  # W[2, 2] = -1


def test_depth_scaled_initialisation_shrinks_the_output_projections():
    def stds(init: str, layers: int) -> tuple[float, float]:
        torch.manual_seed(0)
        config = load_config(
            None, ["topology.kind=cascaded", f"model.num_layers={layers}", f"model.init={init}",
                   "model.hidden_size=128", "model.intermediate_size=256", "model.num_heads=4"],
        )  # fmt: skip
        model = build_model(config, VOCAB)
        wo = torch.cat([b.attn.wo.weight.flatten() for b in model.blocks])
        wq = torch.cat([b.attn.wq.weight.flatten() for b in model.blocks])
        return float(wo.detach().std()), float(wq.detach().std())

    wo, wq = stds("depth_scaled", 8)
    assert wo == pytest.approx(0.02 / math.sqrt(16), rel=0.02)
    assert wq == pytest.approx(0.02, rel=0.02)
    assert stds("normal", 8)[0] == pytest.approx(0.02, rel=0.02)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["topology.kind=cascaded", "topology.form=replace"], "topology.form"),
        (["topology.kind=ancre", "topology.form=sideways"], "topology.form"),
        (["topology.kind=uniform", "topology.init=predecessor"], "topology.init"),
        (["topology.init=predecessor", "topology.predecessor_weight=1.0"],
         "topology.predecessor_weight"),
        (["topology.predecessor_weight=0.5"], "topology.predecessor_weight"),
        (["model.init=xavier"], "model.init"),
        (["train.block_stats_every=-1"], "train.block_stats_every"),
    ],
)  # fmt: skip
def test_bad_form_settings_name_their_key(overrides, key):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert info.value.key == key
