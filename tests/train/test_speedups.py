"""Recompute and compile: the same losses and gradients as the plain model."""

import pytest
import torch

from ancre.config import load_config
from ancre.model import build_model
from ancre.train.speedups import apply_speedups, recomputed_blocks

VOCAB = 97


def loss_and_grads(overrides: list[str]) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    config = load_config(None, ["data.seq_len=32", "topology.temperature=0.5", *overrides])
    model = apply_speedups(build_model(config, VOCAB), config.train)
    with torch.no_grad():
        model.topology.logits.normal_()
    tokens = torch.randint(0, VOCAB, (2, 33), generator=torch.Generator().manual_seed(1))
    loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["blocks", "every_k"])
def test_recompute_gives_equal_losses_and_gradients(mode):
    loss, grads = loss_and_grads([])
    recomputed_loss, recomputed = loss_and_grads([f"train.recompute={mode}"])
    assert recomputed_loss == loss
    for name, grad in grads.items():
        torch.testing.assert_close(recomputed[name], grad, atol=0, rtol=0)


def test_recompute_selects_blocks():
    config = load_config(None, ["train.recompute=every_k", "train.recompute_every_k=2"])
    assert recomputed_blocks(config.train, 6) == frozenset({0, 2, 4})
    assert recomputed_blocks(load_config(None, []).train, 6) == frozenset()
    assert apply_speedups(build_model(config, VOCAB), config.train).recompute == frozenset(
        {0, 2, 4}
    )


@pytest.mark.slow
def test_compiled_blocks_match_eager():
    loss, grads = loss_and_grads([])
    compiled_loss, compiled = loss_and_grads(["train.compile=true"])
    assert compiled_loss == pytest.approx(loss, rel=1e-5)
    for name, grad in grads.items():
        key = name if name in compiled else name.replace("._orig_mod", "")
        torch.testing.assert_close(compiled[key], grad, atol=1e-5, rtol=1e-4)
