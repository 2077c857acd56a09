"""Tiny models of the learned-wiring kinds, and what their blocks saw, captured by hooks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ancre.config import load_config
from ancre.model import Transformer, build_model
from ancre.model.multiway import residual_of

VOCAB = 61

ZOO = {
    "denseformer": [],
    "denseformer-k2p2": ["topology.kind=denseformer", "topology.dilation=2", "topology.period=2"],
    "hyper": ["topology.streams=3"],
    "hyper-dynamic": ["topology.kind=hyper", "topology.streams=3", "topology.dynamic=true"],
    "mhc": ["topology.streams=3"],
    "mhc-dynamic": ["topology.kind=mhc", "topology.streams=3", "topology.dynamic=true"],
    "attnres": [],
    "attnres-blocks": ["topology.kind=attnres", "topology.attnres_blocks=2"],
    "attnres-gated": ["topology.kind=attnres", "topology.form=gated"],
    "attnres-delta": ["topology.kind=attnres", "topology.form=delta"],
    "frac": ["topology.kind=hyper", "topology.streams=1", "topology.fractions=4"],
    "frac-dynamic": [
        "topology.kind=hyper",
        "topology.streams=1",
        "topology.fractions=2",
        "topology.dynamic=true",
    ],
    "mudd": [],
    "mudd-window": ["topology.kind=mudd", "topology.window=2"],
}
"""Test configurations: name -> overrides (the kind is the name when not overridden)."""


def assert_causal(model: Transformer, vocab: int, position: int = 7) -> None:
    """Changing the token at ``position`` changes its logits and later ones, none before."""
    tokens = torch.randint(0, vocab, (1, 12))
    changed = tokens.clone()
    changed[0, position] = (tokens[0, position] + 1) % vocab
    before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[:, :position], after[:, :position], atol=0, rtol=0)
    assert not torch.allclose(before[:, position:], after[:, position:])


def tiny_model(
    name: str, layers: int = 4, seed: int = 0, extra: tuple[str, ...] = ()
) -> Transformer:
    """A 4-block, 32-wide model of a configuration of ZOO (or a plain kind name)."""
    overrides = ZOO.get(name, [])
    if not any(o.startswith("topology.kind=") for o in overrides):
        overrides = [f"topology.kind={name}", *overrides]
    torch.manual_seed(0)
    config = load_config(
        None,
        [*overrides, f"model.num_layers={layers}", "model.hidden_size=32",
         "model.intermediate_size=48", "model.num_heads=4", "data.seq_len=16",
         "topology.backend=reference", *extra],
    )  # fmt: skip
    return build_model(config, VOCAB)


def perturb(model: Transformer, scale: float = 0.3, seed: int = 1) -> None:
    """Moves every topology parameter away from its initial value (a trained state)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.topology.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(scale * noise)


@dataclass
class Seen:
    """What one forward pass fed and got: embeddings, block inputs and outputs, norm input."""

    embeddings: torch.Tensor
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    final: torch.Tensor


def capture(model: Transformer, tokens: torch.Tensor) -> Seen:
    """Runs the model and records, through forward hooks, what each block read and wrote."""
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    seen: dict[str, torch.Tensor] = {}

    def on_block(module, args, output):
        inputs.append(residual_of(args[0]).detach())
        outputs.append(output.detach())

    handles = [block.register_forward_hook(on_block) for block in model.blocks]
    handles.append(model.embed.register_forward_hook(lambda m, a, o: seen.update(e=o.detach())))
    handles.append(model.norm.register_forward_hook(lambda m, a, o: seen.update(f=a[0].detach())))
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    return Seen(seen["e"], inputs, outputs, seen["f"])
