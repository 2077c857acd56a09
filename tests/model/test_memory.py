"""Tests for ancre/model/memory.py: the activation memory Ancre adds, for both backends."""

from __future__ import annotations

import pytest
import torch

from ancre import kernels
from ancre.config import load_config
from ancre.kernels import reference, triton_unavailable
from ancre.model import build_model
from ancre.model.memory import saved_for_backward_bytes
from ancre.train.speedups import apply_speedups

VOCAB = 4096


def ratio(backend: str, checkpointing: str) -> float:
    torch.manual_seed(0)
    tokens = torch.randint(0, VOCAB, (2, 129))
    saved = {}
    for kind in ("cascaded", "ancre"):
        config = load_config(None, [
            "model.preset=tiny", f"topology.kind={kind}", f"topology.backend={backend}",
            "data.seq_len=128", f"train.recompute={checkpointing}",
        ])  # fmt: skip
        model = apply_speedups(build_model(config, VOCAB), config.train).train()
        saved[kind] = saved_for_backward_bytes(model, tokens[:, :-1], tokens[:, 1:])
    return saved["ancre"] / saved["cascaded"]


BACKENDS = ["reference"] + ([] if triton_unavailable() else ["triton"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("checkpointing", ["none", "blocks"])
def test_ancre_keeps_little_more_than_cascaded(backend, checkpointing):
    assert ratio(backend, checkpointing) < 1.05  # measured 1.000-1.026 at this shape


def test_the_plain_autograd_mix_would_keep_fp32_copies(monkeypatch):
    # the bound above is not loose: autograd's own backward of the spec exceeds it
    def plain_backend(weights):
        return lambda j, y, states: reference.mix(y, states, weights[j, : j + 1])

    monkeypatch.setattr(kernels, "reference_backend", plain_backend)
    assert ratio("reference", "blocks") > 1.2
