"""Tiny models of every topology kind, built in-process and written as ancre conversions."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from ancre.config import AncreConfig, load_config, save_config
from ancre.model import Transformer, build_model, freeze_if_due
from ancre.pretrained import PRETRAINED_FORMAT, WEIGHTS
from tests.conftest import REPO

KINDS = (
    "cascaded", "ancre", "uniform", "fixed", "ancre-frozen", "ancre-replace", "uniform-gated",
    "ancre-gated-frozen", "denseformer", "denseformer-dilated", "hyper", "hyper-dynamic", "mhc",
    "mhc-dynamic", "attnres", "attnres-blocks", "attnres-gated",
)  # fmt: skip
"""The kinds the export covers; ancre-frozen is Ancre frozen at step 5 to its top-2 edges;
the others name a kind and a topology.form."""
FROZEN = ("topology.freeze_at=5", "topology.prune=top_k", "topology.prune_k=2")
SETTINGS = {
    "ancre-frozen": ("ancre", FROZEN),
    "ancre-replace": ("ancre", ("topology.form=replace",)),
    "uniform-gated": ("uniform", ("topology.form=gated",)),
    "ancre-gated-frozen": ("ancre", ("topology.form=gated", *FROZEN)),
    "denseformer-dilated": ("denseformer", ("topology.dilation=2", "topology.period=2")),
    "hyper-dynamic": ("hyper", ("topology.dynamic=true",)),
    "mhc-dynamic": ("mhc", ("topology.dynamic=true",)),
    "attnres-blocks": ("attnres", ("topology.attnres_blocks=2",)),
    "attnres-gated": ("attnres", ("topology.form=gated",)),
}
"""Names of KINDS that are not a kind alone: the kind and its overrides."""


def tiny_config(kind: str, *overrides: str) -> AncreConfig:
    """The quickstart config with a smaller tiny model wired by ``kind``."""
    return load_config(
        REPO / "configs/quickstart.yaml",
        [
            f"topology.kind={kind}", "topology.temperature=0.5", "topology.edges=0:2,1:3@0.5,2:4",
            "model.num_layers=4", "data.seq_len=48", "topology.backend=reference", *overrides,
        ],
    )  # fmt: skip


def tiny_model(kind: str, vocab_size: int, seed: int = 0) -> tuple[Transformer, AncreConfig]:
    """A randomly initialised model; an Ancre topology gets random (non-uniform) logits.

    The gated form gets random gates. The ``-frozen`` ones are frozen as at step 7, and
    their conversions (step 7) load frozen.
    """
    name, overrides = SETTINGS.get(kind, (kind, ()))
    config = tiny_config(name, *overrides)
    torch.manual_seed(seed)
    model = build_model(config, vocab_size).eval()
    with torch.no_grad():
        if config.topology.kind == "ancre":
            model.topology.logits.normal_(0.0, 1.0)
        if model.topology.gates is not None:
            model.topology.gates.normal_(0.0, 1.0)
        if config.topology.kind == "denseformer":  # averages away from the identity
            model.topology.alpha.add_(0.3 * torch.randn_like(model.topology.alpha))
        if config.topology.kind in ("hyper", "mhc", "attnres"):  # away from their start
            for parameter in model.topology.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
    if kind.endswith("-frozen"):
        freeze_if_due(model.topology, config.topology, step=7)
    return model, config


def write_conversion(
    model: Transformer, config: AncreConfig, tokenizer: Path, folder: Path
) -> Path:
    """Writes the folder ``ancre convert`` writes (weights, config, tokenizer)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(folder / WEIGHTS), metadata={"format": PRETRAINED_FORMAT, "step": "7"})
    save_config(config, folder / "config.yaml")
    (folder / "tokenizer.model").write_bytes(Path(tokenizer).read_bytes())
    return folder
