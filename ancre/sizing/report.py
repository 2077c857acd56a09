"""A size plan in words: what ``ancre plan`` prints and a run logs when it starts."""

from __future__ import annotations

from ancre.sizing.plan import GIB, HEADROOM, SizePlan

MFUS = (0.3, 0.4, 0.5)
"""The model FLOPs utilisations a plan gives step times at."""


def _gib(nbytes: float) -> str:
    """Bytes in GiB, or in MiB below one GiB (a small model's plan stays readable)."""
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / 2**20:.1f} MiB"


def plan_lines(plan: SizePlan, alternatives: list[tuple[str, SizePlan]]) -> list[str]:
    """The plan, one fact a line.

    Args:
        plan: The plan.
        alternatives: Changes that would make it fit (``ancre.sizing.plan.alternatives``),
            said when it does not.
    """
    config, train, states, acts = plan.config, plan.config.train, plan.states, plan.acts
    shape = f"{config.model.preset or 'custom'} preset" if config.model.preset else "custom shape"
    model = config.model
    if model.laurel != "none":
        shape += f", LAuReL {model.laurel} (rank {model.laurel_rank})"
    if model.value_residual:
        shape += ", value residual"
    lines = [
        f"model: {plan.num_params / 1e6:.1f}M parameters ({shape}), topology "
        f"{config.topology.kind} ({config.topology.form}); {train.precision}, ZeRO "
        f"{train.zero_stage}, {train.optimizer}, recompute {train.recompute}",
        f"batch: {train.global_batch_size} sequences of {config.data.seq_len} per step over "
        f"{plan.ranks} x {plan.device.name}, micro-batch {train.micro_batch_size} per rank",
        "memory per rank:",
        f"  weights (fp32)            {_gib(states.weights)}"
        + (f" + {_gib(states.master)} ZeRO's fp32 copy of the partition" if states.master else ""),
        f"  optimiser moments         {_gib(states.optimizer)}"
        + (f" + {_gib(states.bucket)} ZeRO's reduce bucket" if states.bucket else ""),
        f"  forward and backward      {_gib(plan.computing)}: gradients (fp32) "
        f"{_gib(states.gradients)}"
        + (f", parameters gathered {_gib(states.gathered)}" if states.gathered else "")
        + f", activations {_gib(acts.kept)} (blocks and mix {_gib(acts.blocks)}, bf16 weight "
        f"casts {_gib(acts.weight_casts)}, embeddings/head/loss {_gib(acts.outside)}), loss "
        f"gradient {_gib(acts.transient)}",
        f"  optimiser step            {_gib(states.stepping)}: gradients "
        f"{_gib(states.step_gradients)}, temporaries {_gib(states.step_temporaries)}",
        f"  peak                      {_gib(plan.peak)} of {_gib(plan.device.memory)} "
        f"({plan.peak / plan.device.memory:.0%}; the plan allows {HEADROOM:.0%})",
    ]
    step_flops = plan.flops_per_token * plan.tokens_per_step
    lines.append(
        f"compute: {plan.flops_per_token / 1e9:.3g} GFLOPs per token (6 N + 12 L D T), "
        f"{step_flops / 1e15:.3g} PFLOPs per step"
    )
    if (first := plan.step_seconds(MFUS[0])) is not None:
        times = ", ".join(
            f"{plan.step_seconds(m):.2f} s at {m:.0%} MFU" for m in MFUS if plan.step_seconds(m)
        )
        tokens_s = plan.tokens_per_step / first
        lines.append(f"step time (a model, not a measurement): {times}; {tokens_s:,.0f} tokens/s "
                     f"at {MFUS[0]:.0%}")  # fmt: skip
    else:
        lines.append("step time: no peak FLOP/s is known for this device; none estimated")
    if plan.mix_bound_s is not None:
        lines.append(
            f"topology mix: at least {plan.mix_bound_s * 1e3:.1f} ms of memory traffic per "
            "step on a rank (grouped fused mix at the HBM bandwidth)"
        )
    if plan.fits:
        lines.append(f"fits: yes ({_gib(plan.peak)} per rank)")
    else:
        lines.append(f"fits: NO ({_gib(plan.peak)} per rank, above {HEADROOM:.0%} of "
                     f"{_gib(plan.device.memory)})")  # fmt: skip
        if alternatives:
            lines.append("what would fit:")
            lines += [f"  {label}: {_gib(p.peak)} per rank" for label, p in alternatives]
        else:
            lines.append(
                "nothing tried fits (ZeRO 3, recompute, micro-batch 1, up to 8x the devices): "
                "a larger device, or a smaller model.preset"
            )
    return lines


def plan_summary(plan: SizePlan) -> str:
    """One line for a run's log: the peak per rank and whether it fits."""
    verdict = "fits" if plan.fits else "does NOT fit"
    return (
        f"plan: {_gib(plan.peak)} per rank (forward and backward {_gib(plan.computing)}, "
        f"optimiser step {_gib(plan.states.stepping)}) on {plan.device.name}: {verdict}; "
        "ancre plan CONFIG prints the whole plan"
    )
