"""Bytes per rank of a training run: the model states by ZeRO stage, and the activations.

**Model states.** ancre trains fp32 parameters under bf16 autocast (DeepSpeed's
``torch_autocast``): the parameters are the master copy. Per parameter that is 4
bytes of weights, 4 of gradients and the optimiser's moments: 8 for AdamW (m and v),
4 for Muon's matrices (momentum) and 8 for the parameters Muon leaves to AdamW.
ZeRO partitions the optimiser states over the ranks from stage 1, the gradients from
stage 2, the weights from stage 3; a stage-3 rank also holds the whole of the block it
computes (gathered, with the next one prefetched). DeepSpeed's own estimators
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

BLOCK_BYTES_PER_TOKEN = {"bf16": (26, 8, 4, 8), "fp32": (44, 16, 4, 8)}
"""Per token and block, bytes = a D + b I + c H + d, for the plain block (precision)."""
KIND_EXTRA_PER_TOKEN = {
    "cascaded": (0, 0), "uniform": (0, 0), "fixed": (0, 0), "ancre": (2, 0),
    "denseformer": (2, 4), "hyper": (10, 20), "mhc": (7, 17), "attnres": (2, 4),
}  # fmt: skip
"""What a kind's mix keeps beyond the plain block, per token and block, in units of D
(bf16, fp32): the states a learned static mix needs for its weights' gradient, the
streams of hyper-connections, ... (measured at the kinds' default options)."""
HEAD_BYTES_PER_TOKEN = {"bf16": (7.6, 4.13), "fp32": (11.6, 4.13)}
"""Per token outside the blocks: a D + b V (the embeddings, final norm, logits, loss)."""


@dataclass(frozen=True)
class ModelStates:
    """Bytes of one rank's share of the weights, gradients and optimiser moments.

    Attributes:
        weights: fp32 weights held (the whole model below stage 3, a 1/N share at 3).
        gathered: Stage 3: the blocks gathered whole while computed (this one and the
            prefetched next one); 0 below.
        gradients: fp32 gradients held.
        optimizer: Optimiser moments held.
    """

    weights: int
    gathered: int
    gradients: int
    optimizer: int

    @property
    def total(self) -> int:
        """Every model-state byte of the rank."""
        return self.weights + self.gathered + self.gradients + self.optimizer


def model_states(
    num_params: int,
    stage: int,
    world_size: int,
    optimizer: str = "adamw",
    matrix_params: int = 0,
    block_params: int = 0,
) -> ModelStates:
    """One rank's model-state bytes.

    Args:
        num_params: Parameters of the model.
        stage: ZeRO stage (0-3).
        world_size: Ranks the states are partitioned over.
        optimizer: ``adamw`` or ``muon``.
        matrix_params: With Muon: the parameters of the matrices it updates.
        block_params: Parameters of the largest block (stage 3 gathers two at a time).

    Returns:
        The bytes by kind.
    """
    moments = 8 * num_params if optimizer == "adamw" else 4 * matrix_params + 8 * (
        num_params - matrix_params
    )  # fmt: skip
    share = lambda nbytes, from_stage: -(-nbytes // world_size) if stage >= from_stage else nbytes  # noqa: E731
    return ModelStates(
        weights=share(4 * num_params, 3),
        gathered=2 * 4 * block_params if stage == 3 and world_size > 1 else 0,
        gradients=share(4 * num_params, 2),
        optimizer=share(moments, 1),
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

    Returns:
        The bytes by part.
    """
    a, b, c, d = BLOCK_BYTES_PER_TOKEN[precision]
    element = 2 if precision == "bf16" else 4
    extra = KIND_EXTRA_PER_TOKEN.get(kind, KIND_EXTRA_PER_TOKEN["ancre"])
    kept = layers - recomputed  # a recomputed block's input is the state its mix keeps
    mix = extra[0 if precision == "bf16" else 1] * hidden * tokens * kept
    plain = (a * hidden + b * intermediate + c * heads + d) * tokens
    kept_blocks = kept * plain + recomputed * element * hidden * tokens
    casts = 0
    if precision == "bf16":
        per_block = 2 * (4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden)
        casts = kept * per_block + 2 * hidden * vocab  # and the head's
    head_d, head_v = HEAD_BYTES_PER_TOKEN[precision]
    return Activations(
        blocks=kept_blocks + mix,
        weight_casts=casts,
        outside=round((head_d * hidden + head_v * vocab) * tokens),
        transient=4 * vocab * tokens,
    )
