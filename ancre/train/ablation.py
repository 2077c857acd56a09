"""Which connections matter: each entry of the connection matrix removed, and the loss.

The mass of a learned connection P[j, i] is not its importance. ``ancre ablate``
removes one connection at a time from a trained model's matrix and measures the
validation loss on the run's fixed validation tokens, beside the connection's mass,
with the rank correlation (Spearman) between mass and effect over the connections.
Two ways of removing (``--renormalise``): set P[j, i] to 0 and leave the rest of the
row as it is (default: the row's sum drops by the connection's mass), or rescale the
rest of the row to the old sum. Then, per k, every row pruned to its k heaviest
connections at once, the cut that ``topology.prune: topk`` makes at
``topology.freeze_at``: does it keep what matters?

It covers the kinds whose wiring is static, unfrozen: ``ancre``, ``uniform`` and
``fixed`` (the entries of P over the states h_i) and ``denseformer`` (its
depth-weighted-average weights alpha over the embeddings and block outputs x_k; they
are unconstrained, so a weight's "mass" is its absolute value). The passes share what
an edit leaves unchanged (``ancre.train.ablation_passes``). ``attnres`` computes its
weights from the activations: a source is removed from a reading inside its softmax
(renormalised) or after it, its mass is its mean weight over the validation tokens,
and each edit is a whole forward pass. Hyper-connections and mHC, whose sources are
mixed into n streams with no weight of their own to remove, are refused, as is a
cascaded model, which has nothing to ablate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ancre.config import ConfigError
from ancre.data.loader import IGNORE_INDEX
from ancre.data.validation import validation_set
from ancre.model import Transformer
from ancre.model.topology.forms import mix_weights, stream_reads
from ancre.model.topology.zoo.attnres import AttentionResidualTopology
from ancre.model.topology.zoo.denseformer import DenseFormerTopology
from ancre.train.ablation_passes import edited_losses
from ancre.train.trained import load_trained

ABLATABLE = ("ancre", "uniform", "fixed", "denseformer", "attnres")
"""Kinds whose wiring ``ancre ablate`` can edit (static weights their forward pass reads)."""


@dataclass(frozen=True)
class Connections:
    """What ``ancre ablate`` removes from one model, and how an edit becomes a wiring.

    Attributes:
        weights: (L, L+1): P for the static kinds (row j: block j's mix over h_0 .. h_j);
            DenseFormer's alpha after each block (row j: the average after block j over
            x_0 .. x_{j+1}).
            AttnRes: the mean softmax weight of each source over the validation tokens
            (row j: the input of block j+1, the last row what the final norm reads).
        learned: (L, L+1) bool: the entries that are connections.
        reads: Edited weights -> the reads matrix (L+1, L+1) the passes run; None for
            AttnRes, whose weights depend on the input.
        columns: What a column indexes, in words.
    """

    weights: torch.Tensor
    learned: torch.Tensor
    reads: Callable[[torch.Tensor], torch.Tensor] | None
    columns: str

    def losses(
        self,
        model: Transformer,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        edits: dict[Any, torch.Tensor],
        batch: int,
        stack: int,
    ) -> dict[Any, float]:
        """The validation loss under each edited weights (L, L+1), by the edit's key.

        A static wiring runs its edited reads matrices through the shared passes; AttnRes
        runs whole forward passes with the sources an edit zeroed left out of the
        readings (out of the softmax when ``renormalise_removed``, else after it).
        """
        if self.reads is not None:
            reads = {key: self.reads(weights) for key, weights in edits.items()}
            return edited_losses(model, inputs, targets, reads, batch, stack)
        topology = model.topology
        found = {}
        try:
            for key, weights in edits.items():
                removed = self.learned & (weights == 0) & (self.weights != 0)
                topology.removed = removed if bool(removed.any()) else None
                found[key] = validation_loss(model, inputs, targets, batch)
        finally:
            topology.removed = None
        return found


def connections_of(
    model: Transformer, inputs: torch.Tensor | None = None, batch: int = 8
) -> Connections:
    """The connections of a model of one of the ``ABLATABLE`` kinds.

    Args:
        model: The model, in eval mode.
        inputs: Validation inputs (N, T): AttnRes's mean weights are measured on them.
        batch: Sequences per forward pass.
    """
    topology = model.topology
    if isinstance(topology, AttentionResidualTopology):
        if inputs is None:
            raise ValueError("AttnRes's weights depend on the input: give validation inputs")
        return _attention_connections(model, inputs, batch)
    if isinstance(topology, DenseFormerTopology):
        full = topology.reads_matrix().detach().float()  # (L+1, L+1), row 0 = e_0
        learned = torch.zeros_like(full, dtype=torch.bool)
        learned[topology.rows, topology.cols] = True
        learned[0] = False
        return Connections(
            full[1:], learned[1:], lambda edited: torch.cat([full[:1], edited]),
            columns_of(model),
        )  # fmt: skip
    matrix = topology.matrix().detach().float()  # (L, L+1)
    gates = None if topology.gates is None else topology.gates.detach().float()
    return Connections(
        matrix, torch.ones_like(matrix, dtype=torch.bool).tril(),
        lambda edited: stream_reads(mix_weights(edited, topology.form, gates)),
        columns_of(model),
    )  # fmt: skip


def _attention_connections(model: Transformer, inputs: torch.Tensor, batch: int) -> Connections:
    """AttnRes's sources with their mean softmax weight over the validation inputs."""
    topology = model.topology
    layers = topology.num_layers
    totals = torch.zeros(layers, layers + 1, dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for start in range(0, inputs.shape[0], batch):
            with topology.recording():
                model(inputs[start : start + batch])
            for j, (weights,) in enumerate(topology.recorded()[-layers:]):  # (N, S_j)
                totals[j, : weights.shape[1]] += weights.double().sum(0)
            count += inputs[start : start + batch].numel()
    mean = (totals / count).float()
    learned = torch.zeros(layers, layers + 1, dtype=torch.bool)
    for j in range(layers):
        learned[j, : topology.sources_read(j)] = True
    return Connections(mean, learned, None, columns_of(model))


def columns_of(model: Transformer) -> str:
    """What a column of the model's connections indexes, in words."""
    topology = model.topology
    if isinstance(topology, AttentionResidualTopology):
        return "the sources read: v_0 (the embeddings), then the updates (or group sums)"
    if isinstance(topology, DenseFormerTopology):
        return "x_k: the embeddings (0) and block k-1's output"
    return "h_i: the embeddings (0) and block i-1's mixed output"


@dataclass(frozen=True)
class Ablation:
    """The validation loss with one connection (or a pruning) applied.

    Attributes:
        row: Block j (writes h_{j+1}); -1 for a pruning of every row.
        column: Source state h_i; for a pruning, k (connections kept per row).
        mass: P[j, i] (for a pruning, the mass it removes, summed over rows).
        loss: Validation loss with the change.
        delta: ``loss`` minus the intact model's.
    """

    row: int
    column: int
    mass: float
    loss: float
    delta: float


def check_ablatable(kind: str, frozen: bool) -> None:
    """Refuses a model whose connections this module cannot remove, saying why.

    Raises:
        ConfigError: Naming ``topology.kind`` (or ``topology.freeze_at``).
    """
    if kind == "cascaded":
        raise ConfigError(
            "topology.kind", "is cascaded: the plain residual has no connection matrix, so "
            "there is nothing to ablate",
        )  # fmt: skip
    if kind not in ABLATABLE:
        raise ConfigError(
            "topology.kind", f"is {kind}: its forward pass computes its own weights, which "
            f"ancre ablate cannot edit yet; it covers {', '.join(ABLATABLE)}",
        )  # fmt: skip
    if frozen:
        raise ConfigError(
            "topology.freeze_at", "froze this model's matrix into a sparse wiring; ablate a "
            "checkpoint from before the freeze",
        )  # fmt: skip


@torch.no_grad()
def validation_loss(
    model: Transformer, inputs: torch.Tensor, targets: torch.Tensor, batch: int
) -> float:
    """Mean cross-entropy per counted target token of the model's own forward passes."""
    total, count = 0.0, 0
    for start in range(0, inputs.shape[0], batch):
        x, y = inputs[start : start + batch], targets[start : start + batch]  # (b, T)
        total += float(model(x, y, reduction="sum"))
        count += int((y != IGNORE_INDEX).sum())
    return total / count


def ablate(
    model: Transformer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch: int = 8,
    renormalise: bool = False,
    stack: int = 4,
) -> tuple[float, list[Ablation], list[Ablation]]:
    """Every connection removed on its own, then every row pruned to its top k.

    Args:
        model: The trained model, in eval mode.
        inputs: Validation inputs (N, T).
        targets: Validation targets (N, T).
        batch: Sequences per forward pass.
        renormalise: Rescale the rest of a row to its old sum.
        stack: Edits run together (``ancre.train.ablation_passes.edited_losses``).

    Returns:
        The intact loss, one :class:`Ablation` per connection of nonzero weight, and one
        per k from 1 to the most connections a row has (``row`` -1, ``column`` k).
    """
    found = connections_of(model, inputs, batch)
    weights, learned = found.weights, found.learned
    widest = int(learned.sum(1).max())  # the most connections a row has
    edits: dict[tuple[int, int], torch.Tensor] = {(-2, 0): weights}  # intact
    for j, i in learned.nonzero().tolist():
        if float(weights[j, i]) == 0.0:
            continue
        edited = weights.clone()
        edited[j, i] = 0.0
        if renormalise:
            edited[j] *= weights[j].sum() / edited[j].sum().clamp_min(1e-12)
        edits[(j, i)] = edited
    for k in range(1, widest + 1):
        edits[(-1, k)] = top_k(weights, learned, k, renormalise)
    if found.reads is None:  # AttnRes renormalises in its softmax, or not at all
        model.topology.renormalise_removed = renormalise
    losses = found.losses(model, inputs, targets, edits, batch, stack)
    base = losses.pop((-2, 0))
    singles = [
        Ablation(j, i, float(weights[j, i]), loss, loss - base)
        for (j, i), loss in losses.items() if j >= 0
    ]  # fmt: skip
    prunings = []
    for k in range(1, widest + 1):
        removed = float((weights - top_k(weights, learned, k, renormalise)).abs().sum())
        loss = losses[(-1, k)]
        prunings.append(Ablation(-1, k, removed, loss, loss - base))
    return base, singles, prunings


def top_k(weights: torch.Tensor, learned: torch.Tensor, k: int, renormalise: bool) -> torch.Tensor:
    """Each row keeps its k largest connections by absolute weight (all when it has <= k).

    The entries that are not connections stay as they are.
    """
    edited = torch.where(learned, torch.zeros_like(weights), weights)
    for j in range(weights.shape[0]):
        columns = learned[j].nonzero().flatten()
        row = weights[j, columns]
        keep = columns[torch.topk(row.abs(), min(k, columns.numel())).indices]
        edited[j, keep] = weights[j, keep]
        if renormalise:
            edited[j] *= weights[j].sum() / edited[j].sum().clamp_min(1e-12)
    return edited


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan for fewer than 3 pairs."""
    if len(xs) < 3:
        return math.nan
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx and vy else math.nan


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def ablate_checkpoint(
    path: Path, tokens: int, batch: int = 8, renormalise: bool = False
) -> dict[str, Any]:
    """:func:`ablate` on a checkpoint or conversion, on the CPU, with its own validation set.

    Args:
        path: A checkpoint folder (any ZeRO stage) or an ``ancre convert`` folder.
        tokens: Validation target tokens (the first of the run's validation split).
        batch: Sequences per forward pass.
        renormalise: Rescale the rest of a row to its old sum.

    Returns:
        The result as a JSON-ready dict: the intact loss, every connection (row, column,
        mass, loss, delta), the Spearman correlation of mass and delta, the prunings.

    Raises:
        ConfigError: The model's kind has no matrix this can edit.
    """
    trained = load_trained(path)
    topology = trained.model.topology
    check_ablatable(trained.config.topology.kind, topology.wiring is not None)
    validation = validation_set(trained.config.data, trained.tokenizer, tokens)
    started = time.perf_counter()
    base, singles, prunings = ablate(
        trained.model, validation.inputs, validation.targets, batch, renormalise
    )  # fmt: skip
    return {
        "checkpoint": str(path), "step": trained.step, "kind": trained.config.topology.kind,
        "form": trained.config.topology.form, "renormalised": renormalise,
        "val_tokens": int((validation.targets != IGNORE_INDEX).sum()), "val_loss": base,
        "columns": columns_of(trained.model),
        "spearman_mass_delta": spearman([abs(a.mass) for a in singles],
                                        [a.delta for a in singles]),
        "connections": [asdict(a) for a in singles],
        "top_k": [{"k": a.column, "mass_removed": a.mass, "loss": a.loss, "delta": a.delta}
                  for a in prunings],
        "seconds": time.perf_counter() - started,
    }  # fmt: skip


def ablation_table(result: dict[str, Any]) -> str:
    """The result in words: connections by mass, the correlation, the prunings."""
    how = "the rest of the row rescaled to its sum" if result["renormalised"] else (
        "the rest of the row left as it is"
    )  # fmt: skip
    lines = [
        f"{result['kind']} ({result['form']}) at step {result['step']}: val_loss "
        f"{result['val_loss']:.4f} on {result['val_tokens']} tokens; each connection removed "
        f"on its own ({how}), {result['seconds']:.1f} s",
        "",
        "| row j | column i | mass P[j, i] | loss without it | delta |",
        "|---|---|---|---|---|",
    ]
    for a in sorted(result["connections"], key=lambda a: -a["mass"]):
        lines.append(
            f"| {a['row']} | {a['column']} | {a['mass']:.4f} | {a['loss']:.4f} | "
            f"{a['delta']:+.4f} |"
        )
    lines += [
        "",
        f"Spearman rank correlation of mass and delta over {len(result['connections'])} "
        f"connections: {result['spearman_mass_delta']:.3f}",
        "",
        "| top k kept per row | mass removed | loss | delta |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {p['k']} | {p['mass_removed']:.3f} | {p['loss']:.4f} | {p['delta']:+.4f} |"
        for p in result["top_k"]
    ]
    return "\n".join(lines)
