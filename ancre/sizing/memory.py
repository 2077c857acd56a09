"""Bytes per rank of a training run: the model states by ZeRO stage, and the activations.

**Model states.** ancre trains fp32 parameters under bf16 autocast (DeepSpeed's
``torch_autocast``): the parameters are the master copy. Per parameter that is 4
bytes of weights, 4 of gradients and the optimiser's moments: 8 for AdamW (m and v),
4 for Muon's matrices (momentum) and 8 for the parameters Muon leaves to AdamW.
ZeRO partitions the optimiser states over the ranks from stage 1, the gradients from
stage 2, the weights from stage 3; from stage 1 DeepSpeed also keeps an fp32 copy of
the rank's partition and a reduce bucket, and a stage-3 rank holds the parameters it
gathered (see :class:`ModelStates`; ``tools/bench_plan.py`` measured each against real
runs). DeepSpeed's own estimators
(``estimate_zero2_model_states_mem_needs``, ``..._zero3_...``) assume fp16 weights
with an fp32 master copy, a layout ancre does not use, so they are not applied here.

**Activations.** What autograd keeps for the backward, per micro-batch, counted for
ancre's own code path: the bytes per token of each block were read off
``ancre.model.memory.saved_for_backward_bytes`` (flash-style attention, as the CPU's
and a GPU's fused kernels save it) and are exact for the plain block;
``tests/sizing/test_activation_plan.py`` holds the formula to the measured bytes. With bf16
autocast each block also keeps the bf16 casts of its weights for the backward.
"""

from __future__ import annotations

from dataclasses import dataclass

from ancre.train.zero_buckets import MAX_LIVE_PARAMETERS

BLOCK_BYTES_PER_TOKEN = {"bf16": (26, 8, 4, 8), "fp32": (44, 16, 4, 8)}
"""Per token and block, bytes = a D + b I + c H + d, for the plain block (precision)."""
KIND_EXTRA_PER_TOKEN = {
    "cascaded": (0, 0), "uniform": (0, 0), "fixed": (0, 0), "ancre": (2, 0),
    "denseformer": (2, 4), "hyper": (10, 20), "mhc": (7, 17), "attnres": (2, 4),
    "mudd": (22, 30), "frac": (5, 10),
}  # fmt: skip
"""What a kind's mix keeps beyond the plain block, per token and block, in units of D
(bf16, fp32): the states a learned static mix needs for its weights' gradient, the
streams of hyper-connections, ... (measured at the kinds' default options; ``frac`` is
hyper with ``topology.fractions``, measured at 4; MUDD's grows by its per-token weights,
4 (j + 2) fp32 numbers per token after block j, which D large makes negligible)."""


LAUREL_BYTES_PER_TOKEN = {
    "bf16": {"none": (0, 0), "rw": (6, 0), "lr": (2, 4), "rw_lr": (10, 4)},
    "fp32": {"none": (0, 0), "rw": (8, 0), "lr": (0, 8), "rw_lr": (16, 8)},
}
"""What LAuReL (``model.laurel``) keeps beyond the plain block, per token and block, as
(units of D, units of its rank r), both residual connections together (measured); its
maps' bf16 casts count with the weights' (4 r D per block)."""
HEAD_BYTES_PER_TOKEN = {"bf16": (7.6, 4.13), "fp32": (11.6, 4.13)}
"""Per token outside the blocks: a D + b V (the embeddings, final norm, logits, loss)."""


def mix_name(kind: str, fractions: int) -> str:
    """The row of :data:`KIND_EXTRA_PER_TOKEN` of a ``topology.kind`` and its fractions."""
    return "frac" if fractions > 1 else kind


@dataclass(frozen=True)
class ModelStates:
    """Bytes of one rank's share of the weights, gradients and optimiser states.

    A rank's peak is in one of two phases: the forward and backward (the activations
    alive, the gradients being made) or the optimiser step (the gradients the optimiser
    reads and its temporaries). ``tools/bench_plan.py`` measured each term in real runs.

    Attributes:
        weights: fp32 weights held (the whole model below stage 3, a 1/N share at 3).
        master: From stage 1: DeepSpeed's fp32 copy of the rank's partition, the one
            the optimiser updates (the parameters are fp32 already, it copies them).
        optimizer: Optimiser moments held.
        bucket: From stage 1: the fp32 reduce bucket
            (``ancre.train.zero_buckets.bucket_elements``).
        gradients: fp32 gradients while computing: whole below stage 2 (at stage 1 the
            backward makes them whole before they are reduced), a 1/N share above.
        gathered: Stage 3: the parameters gathered whole while computed. DeepSpeed keeps
            the forward's gathered parameters for the backward up to
            ``stage3_max_live_parameters``, so this is the whole model up to that
            (``ancre.train.zero_buckets.MAX_LIVE_PARAMETERS``); 0 below stage 3.
        step_gradients: fp32 gradients at the optimiser step: whole at stage 0; from
            stage 1 two 1/N shares (the one reduced into and the flat one the
            optimiser reads).
        step_temporaries: The optimiser step's temporaries: AdamW's square root and
            quotient of the second moment over the flat partition from stage 1, one
            model's worth at stage 0.
    """

    weights: int
    master: int
    optimizer: int
    bucket: int
    gradients: int
    gathered: int
    step_gradients: int
    step_temporaries: int

    @property
    def resident(self) -> int:
        """What the rank holds throughout: weights, master copy, moments, bucket."""
        return self.weights + self.master + self.optimizer + self.bucket

    @property
    def computing(self) -> int:
        """Model-state bytes during the forward and backward."""
        return self.resident + self.gradients + self.gathered

    @property
    def stepping(self) -> int:
        """Model-state bytes during the optimiser step (its whole peak: no activations)."""
        return self.resident + self.step_gradients + self.step_temporaries


def model_states(
    num_params: int,
    stage: int,
    world_size: int,
    optimizer: str = "adamw",
    matrix_params: int = 0,
    bucket_elements: int = 0,
) -> ModelStates:
    """One rank's model-state bytes.

    Args:
        num_params: Parameters of the model.
        stage: ZeRO stage (0-3).
        world_size: Ranks the states are partitioned over.
        optimizer: ``adamw`` or ``muon``.
        matrix_params: With Muon: the parameters of the matrices it updates.
        bucket_elements: Elements of ZeRO's reduce bucket (allocated from stage 1).

    Returns:
        The bytes by kind.
    """
    moments = 8 * num_params if optimizer == "adamw" else 4 * matrix_params + 8 * (
        num_params - matrix_params
    )  # fmt: skip
    whole = 4 * num_params
    part = -(-whole // world_size)
    return ModelStates(
        weights=part if stage == 3 else whole,
        master=part if stage >= 1 else 0,
        optimizer=-(-moments // world_size) if stage >= 1 else moments,
        bucket=4 * bucket_elements if stage >= 1 else 0,
        gradients=whole if stage <= 1 else part,
        gathered=4 * min(num_params, MAX_LIVE_PARAMETERS) if stage == 3 else 0,
        step_gradients=2 * part if stage >= 1 else whole,
        step_temporaries=2 * part if stage >= 1 else whole,
    )


@dataclass(frozen=True)
class Activations:
    """Bytes autograd keeps for one micro-batch's backward, and the loss's transient.

    Attributes:
        blocks: What the blocks and the mix keep.
        weight_casts: bf16 casts of the blocks' weights kept for the backward.
        outside: Embeddings, final norm, logits and loss.
        transient: The logits' gradient, alive at the start of the backward.
    """

    blocks: int
    weight_casts: int
    outside: int
    transient: int

    @property
    def kept(self) -> int:
        """Everything autograd keeps (what ``saved_for_backward_bytes`` measures)."""
        return self.blocks + self.weight_casts + self.outside


def activations(
    tokens: int,
    hidden: int,
    intermediate: int,
    heads: int,
    layers: int,
    vocab: int,
    kind: str = "ancre",
    precision: str = "bf16",
    recomputed: int = 0,
    laurel: tuple[str, int] = ("none", 0),
    value_residual_width: int = 0,
) -> Activations:
    """The activation bytes of one micro-batch (see the module's docstring).

    Args:
        tokens: Tokens of the micro-batch (micro-batch size x sequence length).
        hidden: D.
        intermediate: The SwiGLU width I.
        heads: Attention heads H.
        layers: Blocks L.
        vocab: Vocabulary size V.
        kind: ``topology.kind``; a kind not in the table counts as ancre.
        precision: ``bf16`` (autocast) or ``fp32``.
        recomputed: Blocks whose internals are recomputed (they keep their input only;
            ``len(ancre.train.speedups.recomputed_blocks(...))``).
        laurel: ``model.laurel`` and ``model.laurel_rank``.
        value_residual_width: With ``model.value_residual``, the width of the values
            (key/value heads x head size); each later block keeps its own values for the
            mix's weights (measured). 0 without it.

    Returns:
        The bytes by part.
    """
    a, b, c, d = BLOCK_BYTES_PER_TOKEN[precision]
    element = 2 if precision == "bf16" else 4
    extra = KIND_EXTRA_PER_TOKEN.get(kind, KIND_EXTRA_PER_TOKEN["ancre"])
    kept = layers - recomputed  # a recomputed block's input is the state its mix keeps
    mix = extra[0 if precision == "bf16" else 1] * hidden * tokens * kept
    variant, rank = laurel
    laurel_d, laurel_r = LAUREL_BYTES_PER_TOKEN[precision][variant]
    plain = (a * hidden + b * intermediate + c * heads + d) * tokens
    plain += (laurel_d * hidden + laurel_r * rank) * tokens
    kept_blocks = kept * plain + recomputed * element * hidden * tokens
    kept_blocks += min(kept, layers - 1) * element * value_residual_width * tokens
    casts = 0
    if precision == "bf16":
        maps = 4 * rank * hidden if variant in ("lr", "rw_lr") else 0  # LAuReL's A and B
        per_block = 2 * (4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden + maps)
        casts = kept * per_block + 2 * hidden * vocab  # and the head's
    head_d, head_v = HEAD_BYTES_PER_TOKEN[precision]
    return Activations(
        blocks=kept_blocks + mix,
        weight_casts=casts,
        outside=round((head_d * hidden + head_v * vocab) * tokens),
        transient=4 * vocab * tokens,
    )
