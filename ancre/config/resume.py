"""What a resume may change: every config key, classified by what changing it does.

A resumed run compares its config with the checkpoint's, key by key. Each key of the
schema is in exactly one class (``tests/test_config.py`` fails on a key left out):

- refused: it decides what the saved weights, optimiser state or data position mean;
- refused with a reason: the same, with the message saying why;
- the global batch: refused unless ``checkpoint.allow_batch_change``;
- diverging: allowed, but the continuation no longer equals an uninterrupted run (the
  run says so), e.g. ``train.steps``, which moves every later learning rate of a
  cosine schedule (a wsd one goes on in its stable phase; ancre/train/schedule.py says
  what a resume does to the learning rate);
- free: allowed, and the training is the same (logging, evaluation, checkpointing, the
  initialisation settings that only a fresh start reads);
- not compared: where the run is and how it starts.
"""

from __future__ import annotations

from typing import Any

REFUSED_ON_RESUME = (
    "model.preset", "model.hidden_size", "model.intermediate_size", "model.num_layers",
    "model.num_heads", "model.num_kv_heads", "model.vocab_size", "topology.kind",
    "topology.edges", "data.source",
    "topology.dilation", "topology.period", "topology.streams", "topology.dynamic",
    "topology.sinkhorn_iters", "topology.attnres_blocks", "topology.window", "topology.fractions",
    "topology.form",
    "model.laurel", "model.laurel_rank", "model.value_residual",
)  # fmt: skip
"""Keys that decide what the checkpoint's weights mean: a resume must keep them."""
REFUSED_WITH_REASON = {
    "train.optimizer": "the optimiser's saved state (its parameter groups and moments) "
    "belongs to the old optimiser; a new one needs a new run (model.init_from a conversion)",
    "data.sources": "the saved data position holds each source's place and the tokens taken "
    "from each; another mixture needs a new run (model.init_from a conversion)",
    "data.shuffle": "it changes the order of the data, so the saved data position no longer "
    "says which documents were read; keep it for the resume",
}
"""Keys a resume must keep, with why (the message gives it)."""
BATCH = "train.global_batch_size"
"""Kept on resume unless ``checkpoint.allow_batch_change``: it changes the optimisation."""
DIVERGING_ON_RESUME = (
    "train.steps", "train.warmup_steps", "train.lr", "train.min_lr_ratio", "train.schedule",
    "train.decay_fraction", "train.decay_shape", "train.decay_from", "train.z_loss",
    "train.spike_factor", "train.spike_window", "train.beta1",
    "train.beta2", "train.eps", "train.weight_decay", "train.grad_clip", "train.muon_lr",
    "train.muon_momentum", "train.precision", "train.micro_batch_size", "train.zero_stage",
    "train.recompute", "train.recompute_every_k", "train.compile", "train.cpu_threads",
    "model.attention", "model.max_seq_len", "model.norm_eps", "model.rope_theta",
    "topology.backend", "topology.freeze_at", "topology.lr_multiplier", "topology.prune",
    "topology.prune_k", "topology.prune_mass", "topology.temperature", "run.seed",
    "data.path", "data.hub_name", "data.hub_subset", "data.text_field", "data.seq_len",
    "data.packing", "data.restart_positions", "data.tokenizer", "data.tokenizer_model",
    "data.tokenizer_vocab_size", "data.num_workers",
)  # fmt: skip
"""Keys a resume may change, after which it no longer equals an uninterrupted run: the
schedule (``train.steps`` too), the optimisation, the numerics (precision, kernels,
ZeRO stage, micro-batching, threads), the wiring's later life and the data read (the
number of readers too: another count reads the same documents in another order)."""
FREE_ON_RESUME = (
    "train.log_every", "train.profile", "train.max_bad_steps", "train.dist_timeout_s",
    "train.peak_flops", "train.block_stats_every", "model.init", "topology.init",
    "topology.predecessor_weight", "eval.", "checkpoint.", "logging.",
)  # fmt: skip
"""Keys (or section prefixes) that a resume may change without changing the training."""
NOT_COMPARED = ("checkpoint.resume", "run.overwrite", "run.name", "run.out_dir")
"""Where the run is and how it starts."""


def resume_class(key: str) -> str | None:
    """The class of a dotted config key (see the module's docstring), None if it has none.

    Args:
        key: A key as :func:`ancre.config.flat_config` writes it (``train.lr``).

    Returns:
        ``refused``, ``refused_with_reason``, ``batch``, ``diverging``, ``free``,
        ``not_compared``, or None for a key no table names.
    """
    if key in NOT_COMPARED:
        return "not_compared"
    if key in REFUSED_ON_RESUME:
        return "refused"
    if key in REFUSED_WITH_REASON:
        return "refused_with_reason"
    if key == BATCH:
        return "batch"
    if key in DIVERGING_ON_RESUME:
        return "diverging"
    if key.startswith(FREE_ON_RESUME):
        return "free"
    return None


def compare_configs(
    before: dict[str, Any], after: dict[str, Any], allow_batch_change: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """Sorts the differences between a checkpoint's config and a resumed run's.

    A key no table names (a config of a newer version, say) counts as diverging.

    Args:
        before: The checkpoint's config as dotted keys (``flat_config``).
        after: The new config as dotted keys.
        allow_batch_change: A new global batch is allowed (``checkpoint.allow_batch_change``).

    Returns:
        (refused, allowed, diverging): ``key: old -> new`` for keys a resume must keep;
        for every key that may change; and for those of the allowed ones that make the
        continuation differ from an uninterrupted run.
    """
    refused, allowed, diverging = [], [], []
    for key in sorted(after):
        kind = resume_class(key)
        if kind == "not_compared" or before.get(key) == after[key]:
            continue
        text = f"{key}: {before.get(key)!r} -> {after[key]!r}"
        if kind == "refused":
            refused.append(text)
        elif kind == "refused_with_reason":
            refused.append(f"{text} ({REFUSED_WITH_REASON[key]})")
        elif kind == "batch" and not allow_batch_change:
            refused.append(
                f"{text} (it changes the optimisation; set checkpoint.allow_batch_change=true "
                "to continue with the new batch anyway)"
            )
        else:
            allowed.append(text)
            if kind != "free":
                diverging.append(text)
    return refused, allowed, diverging
