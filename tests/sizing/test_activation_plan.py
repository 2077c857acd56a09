"""The plan's bytes against what the code keeps: activations against the bytes autograd
saves (measured), model states against a real DeepSpeed engine's tensors."""

from __future__ import annotations

import pytest
import torch

from ancre.config import load_config
from ancre.model.memory import saved_for_backward_bytes
from ancre.model.transformer import build_model
from ancre.sizing.memory import activations, mix_name, model_states
from ancre.train.speedups import apply_speedups, recomputed_blocks
from tests.helpers.training import QUICKSTART

VOCAB = 1000
SHAPES = {  # (hidden, intermediate, heads, layers, batch, seq)
    "tiny": (128, 352, 4, 4, 2, 48),
    "60m-wide": (512, 1376, 8, 2, 1, 64),
}


def measured_and_planned(
    kind: str,
    shape: str,
    precision: str,
    recompute: str,
    laurel: tuple[str, int] = ("none", 16),
    value_residual: bool = False,
    extra: tuple[str, ...] = (),
) -> tuple:
    hidden, inner, heads, layers, batch, seq = SHAPES[shape]
    config = load_config(QUICKSTART, [
        f"model.hidden_size={hidden}", f"model.intermediate_size={inner}",
        f"model.num_heads={heads}", f"model.num_layers={layers}", f"data.seq_len={seq}",
        f"topology.kind={kind}", f"train.recompute={recompute}", f"train.precision={precision}",
        f"model.laurel={laurel[0]}", f"model.laurel_rank={laurel[1]}",
        f"model.value_residual={value_residual}", *extra,
    ])  # fmt: skip
    torch.manual_seed(0)
    model = apply_speedups(build_model(config, VOCAB), config.train).train()
    tokens = torch.randint(0, VOCAB, (batch, seq))
    measured = saved_for_backward_bytes(model, tokens, tokens, autocast=precision == "bf16")
    recomputed = len(recomputed_blocks(config.train, layers))
    planned_kind = mix_name(kind, config.topology.fractions)
    planned = activations(
        batch * seq, hidden, inner, heads, layers, VOCAB, planned_kind, precision, recomputed,
        laurel, hidden if value_residual else 0,
    ).kept  # fmt: skip
    return measured, planned


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("kind", ["cascaded", "ancre", "uniform", "denseformer", "attnres", "mudd"])
def test_planned_activations_are_what_autograd_keeps(kind, shape, precision) -> None:
    measured, planned = measured_and_planned(kind, shape, precision, "none")
    assert planned == pytest.approx(measured, rel=0.03), (measured, planned)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("rank", [16, 64])
@pytest.mark.parametrize("variant", ["rw", "lr", "rw_lr"])
def test_laurel_is_planned_as_autograd_keeps_it(variant, rank, precision) -> None:
    laurel = (variant, rank)
    measured, planned = measured_and_planned("ancre", "60m-wide", precision, "none", laurel)
    assert planned == pytest.approx(measured, rel=0.03), (measured, planned)
    plain, _ = measured_and_planned("ancre", "60m-wide", precision, "none")
    assert measured > plain  # it keeps something, and the plan counts it


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_value_residual_is_planned_as_autograd_keeps_it(precision) -> None:
    measured, planned = measured_and_planned("ancre", "tiny", precision, "none", ("none", 16), True)
    assert planned == pytest.approx(measured, rel=0.01), (measured, planned)
    plain, _ = measured_and_planned("ancre", "tiny", precision, "none")
    assert measured > plain


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_frac_connections_are_planned_as_autograd_keeps_them(precision) -> None:
    fractions = ("topology.streams=1", "topology.fractions=4")
    measured, planned = measured_and_planned("hyper", "tiny", precision, "none", extra=fractions)
    assert planned == pytest.approx(measured, rel=0.03), (measured, planned)


@pytest.mark.parametrize("kind", ["hyper", "mhc"])
def test_the_stream_kinds_are_planned_within_ten_percent(kind) -> None:
    measured, planned = measured_and_planned(kind, "60m-wide", "bf16", "none")
    assert planned == pytest.approx(measured, rel=0.10), (measured, planned)


@pytest.mark.parametrize("kind", ["cascaded", "ancre"])
@pytest.mark.parametrize("recompute", ["blocks", "every_k"])
def test_recomputed_blocks_keep_only_their_input(kind, recompute) -> None:
    measured, planned = measured_and_planned(kind, "tiny", "bf16", recompute)
    assert planned == pytest.approx(measured, rel=0.03), (measured, planned)
    plain, _ = measured_and_planned(kind, "tiny", "bf16", "none")
    assert measured < plain  # recompute saves something, and the plan sees how much


def test_model_states_follow_the_zero_stages() -> None:
    n, world = 1_000_000, 4
    by_stage = [model_states(n, stage, world, bucket_elements=1000) for stage in range(4)]
    assert [s.optimizer for s in by_stage] == [8 * n, 2 * n, 2 * n, 2 * n]
    assert [s.gradients for s in by_stage] == [4 * n, 4 * n, n, n]
    assert [s.weights for s in by_stage] == [4 * n, 4 * n, 4 * n, n]
    assert [s.master for s in by_stage] == [0, n, n, n]
    assert [s.bucket for s in by_stage] == [0, 4000, 4000, 4000]
    assert [s.step_gradients for s in by_stage] == [4 * n, 2 * n, 2 * n, 2 * n]
    assert [s.gathered for s in by_stage] == [0, 0, 0, 4 * n]  # the whole model, gathered
    assert model_states(10**10, 3, 8).gathered == 4 * 10**9  # up to max_live_parameters
    # past stage 0 the optimiser step holds less than the backward on many ranks
    assert by_stage[3].stepping < by_stage[3].computing
    muon = model_states(n, 0, 1, "muon", matrix_params=800_000)
    assert muon.optimizer == 4 * 800_000 + 8 * 200_000
