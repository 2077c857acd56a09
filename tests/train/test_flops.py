import pytest
import torch

from ancre.config import load_config
from ancre.model import build_model, resolve_shape
from ancre.train.flops import device_peak_flops, flops_per_token, mfu, shape_flops_per_token


def test_flops_per_token_is_6n_plus_attention():
    model = build_model(load_config(None, ["model.preset=60m", "data.seq_len=256"]), 32000)
    hidden, inter, layers = 512, 1376, 8
    per_layer = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden  # attention, MLP, norms
    matmul_params = layers * per_layer + hidden + hidden * 32000 + model.topology.logits.numel()
    assert flops_per_token(model, 256) == 6 * matmul_params + 12 * layers * hidden * 256


def test_mfu_needs_a_peak():
    assert mfu(1000.0, 1e9, None, 1) is None
    assert mfu(1000.0, 1e9, 4e12, 2) == pytest.approx(0.125)
    assert device_peak_flops(123.0) == 123.0
    if not torch.cuda.is_available():
        assert device_peak_flops() is None


def test_the_shape_alone_gives_the_models_flops_up_to_the_topology_logits():
    config = load_config(None, ["topology.kind=cascaded", "data.seq_len=64"])
    model = build_model(config, vocab_size=300)
    shape = resolve_shape(config.model, 300, 64)
    assert shape_flops_per_token(shape, 64) == flops_per_token(model, 64)
