"""`ancre viz` draws the snapshot of every learned wiring and names its kind and formula."""

import json
from html import escape

import pytest
import torch

from ancre.cli import main
from ancre.snapshot import write_snapshot
from tests.helpers.report_checks import FIGURES
from tests.helpers.zoo_models import VOCAB, perturb, tiny_model


@pytest.mark.parametrize("name", ["denseformer", "hyper", "mhc-dynamic", "attnres-blocks"])
def test_every_kind_is_drawn_with_its_formula(name, tmp_path):
    model = tiny_model(name)
    perturb(model)
    topology = model.topology
    if topology.dynamic:
        with topology.recording(), torch.no_grad():
            model(torch.randint(0, VOCAB, (2, 8)))
    run = tmp_path / name
    (run / "topology").mkdir(parents=True)
    for step in (0, 10):
        write_snapshot(
            topology.snapshot(step, step * 100), run / "topology" / f"step_{step:08d}.json"
        )
    out = tmp_path / "out"
    assert main(["viz", str(run), "--out", str(out)]) == 0
    assert all((out / f"{stem}.png").exists() for stem in FIGURES)
    kind, formula = topology.parameterisation, type(topology).FORMULA  # the kind's own
    row = json.loads((out / "summary.json").read_text())["runs"][0]
    assert row["topology"] == kind and row["formula"] == formula
    html = (out / "report.html").read_text()
    assert escape(f"{kind}: {formula}") in html
    assert ("Input-dependent" in html) == topology.dynamic
