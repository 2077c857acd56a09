"""What sharing the unchanged blocks saves ``ancre ablate``, measured in one run.

Loads a checkpoint (any ZeRO stage) or conversion on the CPU and evaluates every edit
``ancre ablate`` makes (each connection removed, each top-k pruning) twice on the same
validation tokens: through ``ancre.train.ablation_passes.edited_losses`` (the blocks
before an edit's row run once per batch, a row's edits stacked) and as one whole
forward pass of the model per edit, its own mix reading the edited wiring. Prints both
times, their ratio and the largest difference between the two losses of an edit.

    python tools/bench_ablation.py runs/quickstart --tokens 4096
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ancre.data.loader import IGNORE_INDEX
from ancre.data.validation import validation_set
from ancre.model.topology.zoo.denseformer import DenseFormerTopology
from ancre.run_folder import checkpoint_of
from ancre.train.ablation import check_ablatable, connections_of, top_k, validation_loss
from ancre.train.ablation_passes import edited_losses
from ancre.train.trained import load_trained


def whole_pass_loss(model, inputs, targets, batch: int, override: str, value) -> float:
    """The model's own forward over the set with one topology method overridden."""
    setattr(model.topology, override, lambda: value)
    try:
        return validation_loss(model, inputs, targets, batch)
    finally:
        delattr(model.topology, override)


def main() -> None:
    """Times both ways of evaluating the edits of one checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--stack", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trained = load_trained(checkpoint_of(args.checkpoint))
    model, topology = trained.model, trained.model.topology
    check_ablatable(trained.config.topology.kind, topology.wiring is not None)
    validation = validation_set(trained.config.data, trained.tokenizer, args.tokens)
    inputs, targets = validation.inputs, validation.targets
    found = connections_of(model)
    if found.reads is None:
        raise SystemExit("the shared passes are for static wirings; attnres runs whole passes")
    widest = int(found.learned.sum(1).max())
    edits = {"intact": found.weights}
    for j, i in found.learned.nonzero().tolist():
        if float(found.weights[j, i]) != 0.0:
            edited = found.weights.clone()
            edited[j, i] = 0.0
            edits[(j, i)] = edited
    for k in range(1, widest + 1):
        edits[("top", k)] = top_k(found.weights, found.learned, k, False)
    started = time.perf_counter()
    shared = edited_losses(
        model, inputs, targets, {n: found.reads(w) for n, w in edits.items()},
        args.batch_size, args.stack,
    )  # fmt: skip
    shared_s = time.perf_counter() - started
    dense = isinstance(topology, DenseFormerTopology)
    override = "reads_matrix" if dense else "weights"
    started = time.perf_counter()
    whole = {
        name: whole_pass_loss(model, inputs, targets, args.batch_size, override,
                              found.reads(w) if dense else w)
        for name, w in edits.items()
    }  # fmt: skip
    whole_s = time.perf_counter() - started
    worst = max(abs(shared[n] - whole[n]) for n in edits)
    print(
        f"{trained.config.topology.kind}, {model.shape.num_layers} blocks, "
        f"{int((targets != IGNORE_INDEX).sum())} tokens, {len(edits)} evaluations "
        f"(intact, {len(edits) - 1 - widest} connections, {widest} prunings), "
        f"{args.threads} thread(s):"
    )
    print(f"  one whole forward pass per edit: {whole_s:.1f} s")
    print(f"  shared blocks, stacked edits:    {shared_s:.1f} s ({whole_s / shared_s:.2f}x faster)")
    print(f"  largest loss difference between the two: {worst:.2e}")


if __name__ == "__main__":
    main()
