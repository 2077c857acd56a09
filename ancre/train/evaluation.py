"""The validation loss of a model under training, over every process.

Every process evaluates every W-th sequence of the fixed validation set
(``ancre.data.validation``) and the losses are summed per token over the processes; a
mixture's sources are evaluated apart.
"""

from __future__ import annotations

import math

import torch

from ancre.data.loader import IGNORE_INDEX
from ancre.data.validation import ValidationSet
from ancre.train.engine import Engine


def evaluate(
    engine: Engine, inputs: torch.Tensor, targets: torch.Tensor, micro_batch_size: int
) -> dict[str, float]:
    """Token-weighted validation loss over all processes.

    Every process evaluates every W-th sequence; all run the same number of forward
    passes (padding with fully ignored rows), which ZeRO-3 needs.

    Args:
        engine: The engine holding the model.
        inputs: Validation inputs (N, T), identical on every process.
        targets: Validation targets (N, T); IGNORE_INDEX positions do not count.
        micro_batch_size: Rows per forward pass.

    Returns:
        ``val_loss`` (mean cross-entropy per target token), ``val_ppl`` and ``val_tokens``.
    """
    rank, world = engine.context.rank, engine.context.world_size
    own_inputs, own_targets = inputs[rank::world], targets[rank::world]  # (n, T) each
    num_batches = math.ceil(math.ceil(inputs.shape[0] / world) / micro_batch_size)
    padding = num_batches * micro_batch_size - own_inputs.shape[0]
    if padding:
        filler = inputs[:1].expand(padding, -1)  # (padding, T)
        own_inputs = torch.cat([own_inputs, filler])
        own_targets = torch.cat([own_targets, torch.full_like(filler, IGNORE_INDEX)])
    loss_sum = 0.0
    for b in range(num_batches):
        rows = slice(b * micro_batch_size, (b + 1) * micro_batch_size)
        loss_sum += engine.loss_sum(own_inputs[rows], own_targets[rows])
    count = float((own_targets != IGNORE_INDEX).sum())
    total, tokens = engine.all_reduce_sum([loss_sum, count])
    loss = total / tokens
    return {"val_loss": loss, "val_ppl": perplexity(loss), "val_tokens": tokens}


def evaluate_set(
    engine: Engine, validation: ValidationSet, micro_batch_size: int
) -> dict[str, float]:
    """:func:`evaluate` on a validation set, each source of a mixture apart.

    Args:
        engine: The engine holding the model.
        validation: The validation set, identical on every process.
        micro_batch_size: Rows per forward pass.

    Returns:
        ``val_loss``, ``val_ppl`` and ``val_tokens``; for a mixture, also each source's
        ``val_loss/<name>`` and ``val_tokens/<name>``, and ``val_loss`` is the mean of the
        sources' losses weighted by the mixture's weights (their share of training).
    """
    if not validation.parts:
        return evaluate(engine, validation.inputs, validation.targets, micro_batch_size)
    record: dict[str, float] = {}
    loss, tokens = 0.0, 0.0
    for part in validation.parts:
        inputs, targets = validation.inputs[part.rows], validation.targets[part.rows]  # (n, T)
        result = evaluate(engine, inputs, targets, micro_batch_size)
        record[f"val_loss/{part.name}"] = result["val_loss"]
        record[f"val_tokens/{part.name}"] = result["val_tokens"]
        loss += part.weight * result["val_loss"]
        tokens += result["val_tokens"]
    return {"val_loss": loss, "val_ppl": perplexity(loss), "val_tokens": tokens, **record}


def perplexity(loss: float) -> float:
    """exp(loss); inf when that overflows (a diverged model), nan for a nan loss."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
