"""How training executes the blocks of a built model: recompute and compile.

Applied after :func:`ancre.model.build_model` (which reads only the model, topology and
sequence length), the way torchtitan applies its parallelisms to a built model. Neither
changes a parameter or its name, so checkpoints are the same with or without them.
"""

from __future__ import annotations

from ancre.config import TrainConfig
from ancre.model import Transformer


def recomputed_blocks(train: TrainConfig, num_layers: int) -> frozenset[int]:
    """The blocks whose internals ``train.recompute`` recomputes in the backward pass.

    Args:
        train: The ``train`` section (``recompute``, ``recompute_every_k``).
        num_layers: L, the number of blocks.

    Returns:
        none: no block; blocks: every block; every_k: blocks 0, k, 2k, ...
    """
    every = {"none": 0, "blocks": 1, "every_k": train.recompute_every_k}[train.recompute]
    return frozenset(range(0, num_layers, every)) if every else frozenset()


def apply_speedups(model: Transformer, train: TrainConfig) -> Transformer:
    """Sets the model's recomputed blocks and compiles each block when asked (in place).

    The hidden states the topology mixes are always kept; only block internals are
    recomputed. ``train.compile`` compiles each block in place (the topology mix stays
    eager), so parameter names are unchanged.

    Args:
        model: A built model.
        train: The ``train`` section.

    Returns:
        The same model.
    """
    model.recompute = recomputed_blocks(train, model.shape.num_layers)
    if train.compile:
        for block in model.blocks:
            block.compile()
    return model
