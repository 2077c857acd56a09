"""LAuReL (model.laurel): every variant starts as the plain block, then learns; the
low-rank map is Gemma 3n's before its norm; bad settings are refused by name."""

from __future__ import annotations

import pytest
import torch

from ancre.config import ConfigError, load_config
from ancre.model.laurel import LaurelResidual
from tests.helpers.zoo_models import VOCAB, tiny_model

VARIANTS = ("rw", "lr", "rw_lr")


def laurel_model(variant: str, kind: str = "ancre"):
    return tiny_model(kind, extra=(f"model.laurel={variant}", "model.laurel_rank=4"))


@pytest.mark.parametrize("kind", ["cascaded", "ancre"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_starts_as_the_plain_block(variant, kind):
    laurel = laurel_model(variant, kind)
    plain = tiny_model(kind)
    shared = {n: t for n, t in laurel.state_dict().items() if "_residual." not in n}
    plain.load_state_dict(shared, strict=True)  # every other weight is the plain model's
    tokens = torch.randint(0, VOCAB, (2, 12))
    torch.testing.assert_close(laurel(tokens), plain(tokens), atol=0, rtol=0)
    added = {n for n in laurel.state_dict() if "_residual." in n}
    per_block = {"rw": 2, "lr": 2, "rw_lr": 4}[variant] * 2  # two connections a block
    assert len(added) == per_block * len(laurel.blocks)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_laurel_weight_gets_a_gradient_at_step_0(variant):
    model = laurel_model(variant)
    tokens = torch.randint(0, VOCAB, (2, 12))
    model(tokens, tokens).backward()
    for name, parameter in model.named_parameters():
        if "_residual." in name and not name.endswith(".down"):  # A's waits for B to move
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_the_low_rank_map_is_gemma_3n_s_before_its_norm():
    transformers = pytest.importorskip("transformers")
    gemma = transformers.models.gemma3n.modeling_gemma3n
    config = gemma.Gemma3nTextConfig(hidden_size=32, laurel_rank=4, rms_norm_eps=1e-6)
    block = gemma.Gemma3nTextLaurelBlock(config).eval()
    ours = LaurelResidual(32, "lr", 4)
    with torch.no_grad():
        ours.down.copy_(block.linear_left.weight)  # A (r, D)
        ours.up.copy_(block.linear_right.weight)  # B (D, r), no longer zero
    x = torch.randn(2, 5, 32)
    carried = ours(x, torch.zeros_like(x))  # x + B A x
    expected = block(x)  # x + norm(B A x)
    torch.testing.assert_close(x + block.post_laurel_norm(carried - x), expected)


def test_weights_start_as_the_plain_residual_after_init():
    module = LaurelResidual(16, "rw_lr", 2)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(1.0)
    module.reset_parameters(0.02)
    assert module.alpha.item() == 1.0 and module.beta.item() == 1.0
    assert not module.up.any() and module.down.std() > 0


@pytest.mark.parametrize(
    "override, key",
    [("model.laurel=rwlr", "model.laurel"), ("model.laurel_rank=0", "model.laurel_rank")],
)
def test_bad_laurel_settings_name_their_key(override, key):
    with pytest.raises(ConfigError) as raised:
        load_config(None, [override])
    assert raised.value.key == key
