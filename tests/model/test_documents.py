"""Documents of packed windows read apart (data.packing: docs_masked), for every kind."""

from __future__ import annotations

import pytest
import torch

from ancre.config import load_config
from ancre.kernels.attention import DocumentMask
from ancre.model import build_model
from ancre.model.documents import DocumentMasking, document_layout
from tests.helpers.zoo_models import VOCAB, ZOO, perturb

EOS = 0
KINDS = ["cascaded", "ancre", "uniform", "fixed", "ancre-replace", "ancre-gated", *ZOO]
OVERRIDES = {
    "fixed": ["topology.kind=fixed", "topology.edges=0:2,1:3"],
    "ancre-replace": ["topology.kind=ancre", "topology.form=replace"],
    "ancre-gated": ["topology.kind=ancre", "topology.form=gated"],
}


def model_of(name: str, *extra: str, eos_id: int | None = EOS):
    overrides = OVERRIDES.get(name) or ZOO.get(name) or []
    if not any(o.startswith("topology.kind=") for o in overrides):
        overrides = [f"topology.kind={name}", *overrides]
    torch.manual_seed(0)
    config = load_config(None, [
        *overrides, "model.num_layers=4", "model.hidden_size=32", "model.intermediate_size=48",
        "model.num_heads=4", "data.seq_len=32", "topology.backend=reference", *extra,
    ])  # fmt: skip
    model = build_model(config, VOCAB, eos_id).double()
    if list(model.topology.parameters()):
        perturb(model)  # a trained wiring: the gates and dynamic projections away from 0
    return model.eval()


def documents(seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1, VOCAB, (n,), generator=generator).tolist() for n in (6, 9, 5)]


def loss_sum(model, window: list[int]) -> torch.Tensor:
    tokens = torch.tensor([window])
    return model(tokens[:, :-1], tokens[:, 1:], reduction="sum")


@torch.no_grad()
@pytest.mark.parametrize("name", KINDS)
def test_a_masked_packed_window_has_the_loss_of_its_documents_run_alone(name):
    model = model_of(name, "data.packing=docs_masked")
    docs = documents()
    packed = [token for doc in docs for token in (*doc, EOS)]
    alone = sum(loss_sum(model, [*doc, EOS]) for doc in docs)  # each: inputs doc, targets
    # doc[1:] + EOS; in the window the EOS input's target (the next document) is left out
    torch.testing.assert_close(loss_sum(model, packed), alone, rtol=1e-10, atol=1e-10)
    joined = model_of(name, "data.packing=docs")  # the same weights, documents joined
    assert not torch.allclose(loss_sum(joined, packed), alone)


@torch.no_grad()
def test_without_restarting_positions_attention_still_stays_within_each_document():
    model = model_of("ancre", "data.packing=docs_masked", "data.restart_positions=false")
    first, second, third = documents()
    other = [(t % (VOCAB - 1)) + 1 for t in first[::-1]]  # another first document, same length
    windows = [[*doc, EOS, *second, EOS, *third, EOS] for doc in (first, other)]
    logits = [model(torch.tensor([w[:-1]])) for w in windows]
    after = len(first) + 1  # every position of the second and third documents
    torch.testing.assert_close(logits[0][:, after:], logits[1][:, after:], rtol=0, atol=0)
    restarted = model_of("ancre", "data.packing=docs_masked")
    assert not torch.equal(restarted(torch.tensor([windows[0][:-1]])), logits[0])  # positions


def test_the_layout_of_a_window():
    tokens = torch.tensor([[5, 6, EOS, 7, EOS, EOS, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8]])
    mask, positions = document_layout(tokens, DocumentMasking(EOS))
    assert mask.segments.tolist() == [[0, 0, 0, 1, 1, 2, 3, 3], [0] * 8]
    assert positions is not None
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0, 0, 1], list(range(8))]
    dense = mask.dense()[0, 0]
    assert dense[3].tolist() == [False, False, False, True, False, False, False, False]
    assert dense[7].tolist() == [False] * 6 + [True, True]
    bounds, longest = mask.varlen()
    assert bounds.tolist() == [0, 3, 5, 6, 8, 16] and longest == 8
    assert document_layout(tokens, DocumentMasking(EOS, restart_positions=False))[1] is None


def test_a_model_built_without_the_eos_reads_single_documents():
    """Generation and export build with no EOS: one document, nothing masked."""
    model = model_of("ancre", "data.packing=docs_masked", eos_id=None)
    assert model.documents is None
    assert isinstance(DocumentMask(torch.zeros(1, 2, dtype=torch.long)).dense(), torch.Tensor)
