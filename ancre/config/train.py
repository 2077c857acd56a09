"""The ``train`` section: batch sizes, the optimiser, the schedule, the objective, numerics.

Its own module beside ``sections.py``, as ``topology.py`` is: the schedule (cosine, WSD,
linear, constant; ``ancre/train/schedule.py``), the z-loss and the skipping of loss
spikes sit with the optimiser settings they go with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ancre.config.checks import ConfigError, choice, non_negative, positive

RECOMPUTE_MODES = ("none", "blocks", "every_k")
PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("adamw", "adam_atan2", "muon")
SCHEDULES = ("cosine", "wsd", "linear", "constant")
DECAY_SHAPES = ("linear", "1-sqrt")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: batch sizes, the optimiser, the learning-rate schedule, precision, ZeRO."""

    steps: int = 1000
    """Number of optimiser steps."""
    micro_batch_size: int = 8
    """Sequences per process per forward pass."""
    global_batch_size: int = 8
    """Sequences per optimiser step over all processes (micro x accumulation x world)."""
    optimizer: str = "adamw"
    """adamw; adam_atan2 (Adam with atan2 in place of epsilon, Everett et al. 2024; same
    lr scale as AdamW, train.eps unused); or muon (the blocks' 2-D weight matrices under
    Muon at train.muon_lr, everything else under AdamW at train.lr; DeepSpeed's Muon,
    any ZeRO stage, but under ZeRO 1-3 only with train.grad_clip=0, and there grad_norm
    reports the norm of the orthogonalised update). ancre/train/optimizers.py builds
    them."""
    lr: float = 1e-3
    """Peak learning rate of AdamW / Adam-atan2: every parameter's, or under muon that of
    the embeddings, head, norms and (times topology.lr_multiplier) topology logits."""
    muon_lr: float = 0.02
    """With optimizer muon: peak learning rate of the blocks' weight matrices, in Muon's
    own units. Each step moves a matrix W (rows x cols) by muon_lr x O x
    sqrt(max(1, rows/cols)), O the orthogonalised momentum (all singular values near 1),
    so muon_lr is a step in spectral norm, not comparable to an AdamW lr (Keller Jordan's
    and DeepSpeed's convention; 0.02 is their default). The schedule scales it like lr."""
    muon_momentum: float = 0.95
    """With optimizer muon: Nesterov momentum of the Muon matrices."""
    min_lr_ratio: float = 0.1
    """Final learning rate of the decay (cosine, wsd, linear) as a fraction of lr."""
    warmup_steps: int = 100
    """Steps of linear warmup from 0 to lr (every schedule has it)."""
    schedule: str = "cosine"
    """The learning rate after the warmup (ancre/train/schedule.py): cosine (to
    min_lr_ratio at train.steps), wsd (warmup, stable at lr, then a decay to min_lr_ratio
    over the last train.decay_fraction of the steps, as in OLMo-core and torchtitan),
    linear (straight to min_lr_ratio at train.steps) or constant."""
    decay_fraction: float = 0.2
    """With schedule wsd: the share of train.steps the final decay takes."""
    decay_shape: str = "linear"
    """With schedule wsd: the decay's shape, linear or 1-sqrt (1 - sqrt(progress), which
    falls faster at first and flattens towards the end; the cooldown Hägele et al. 2024
    found best)."""
    decay_from: int = 0
    """With schedule wsd: start the decay at this step instead (it then runs to
    train.steps); how a decay is branched off any checkpoint of a WSD run: resume from it
    with train.decay_from at its step and train.steps at the end of the decay. 0: at
    train.steps x (1 - train.decay_fraction)."""
    z_loss: float = 0.0
    """Coefficient of the z-loss, z_loss x mean(logsumexp(logits)^2) over the target
    tokens, added to the cross-entropy (PaLM, OLMo-core; 1e-4 is usual) and logged
    apart from it; computed in fp32 also under bf16. 0: none."""
    spike_factor: float = 0.0
    """Skip an optimiser step whose loss is above this multiple of the median loss of the
    last train.spike_window applied steps, as a non-finite step is skipped (counted, and
    it counts towards train.max_bad_steps); logged when it fires. 0: never (the
    default). Reads the step's loss on the host every step when on."""
    spike_window: int = 50
    """Applied steps whose median a spike is measured against; none is skipped before
    the window is full."""
    weight_decay: float = 0.0
    """Decoupled weight decay of the weight matrices, w <- w (1 - lr x weight_decay) with
    the group's lr (never of norms or topology logits)."""
    beta1: float = 0.9
    """AdamW (and Adam-atan2) beta1."""
    beta2: float = 0.999
    """AdamW (and Adam-atan2) beta2."""
    eps: float = 1e-8
    """AdamW epsilon (Adam-atan2 has none)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping (required by
    optimizer muon under ZeRO 1-3)."""
    precision: str = "bf16"
    """fp32, or bf16: fp32 weights (the master copy) with bf16 compute under autocast."""
    zero_stage: int = 0
    """DeepSpeed ZeRO stage, 0 to 3."""
    log_every: int = 10
    """Write a metrics line every this many steps."""
    block_stats_every: int = 50
    """Every this many steps, write the per-block statistics (the RMS of every state,
    each block's update ratio and its share of the final state, over the first
    validation sequences; ancre/model/depth_stats.py) into metrics.jsonl; 0 never."""
    recompute: str = "none"
    """Recompute block internals in the backward pass (activation checkpointing): none,
    blocks (every block) or every_k (every train.recompute_every_k-th block). The hidden
    states the topology mixes are always kept. Formerly train.activation_checkpointing."""
    recompute_every_k: int = 2
    """With recompute every_k: recompute blocks 0, k, 2k, ... Formerly
    train.checkpoint_every_k."""
    compile: bool = False
    """Compile each block with torch.compile (the topology mix stays eager)."""
    peak_flops: float = 0.0
    """Peak dense bf16 FLOP/s of one device for the MFU metric; 0 looks the device up
    (known GPUs), and no MFU is reported where it is unknown."""
    max_bad_steps: int = 5
    """Stop after this many optimiser steps in a row skipped for a non-finite loss or
    gradient (the last complete checkpoint stays intact)."""
    cpu_threads: int = 0
    """Intra-op threads of each process on a CPU; 0 chooses them from the free cores
    (ancre/train/threads.py). OMP_NUM_THREADS, when set, wins."""
    profile: list[int] = field(default_factory=list)
    """[first step, number of steps]: record those optimiser steps with torch.profiler into
    the run folder's profile/ (a Chrome trace and an operator summary per process, the
    topology mix in its own range, a CUDA memory snapshot on a GPU; docs/performance.md);
    empty records nothing."""
    dist_timeout_s: int = 300
    """Seconds a collective (all-reduce, barrier) waits for the other processes before
    failing, so a dead or unreachable peer stops the run instead of hanging it."""

    def check(self) -> None:
        """Raises ConfigError naming the first field of this section that is not allowed."""
        choice("train.precision", self.precision, PRECISIONS)
        choice("train.optimizer", self.optimizer, OPTIMIZERS)
        choice("train.recompute", self.recompute, RECOMPUTE_MODES)
        choice("train.schedule", self.schedule, SCHEDULES)
        choice("train.decay_shape", self.decay_shape, DECAY_SHAPES)
        for key in (
            "steps", "micro_batch_size", "global_batch_size", "log_every", "max_bad_steps",
            "dist_timeout_s", "lr", "muon_lr", "eps", "recompute_every_k", "spike_window",
        ):  # fmt: skip
            positive(f"train.{key}", getattr(self, key))
        for key in (
            "warmup_steps", "weight_decay", "grad_clip", "peak_flops", "cpu_threads",
            "block_stats_every", "decay_from", "z_loss",
        ):  # fmt: skip
            non_negative(f"train.{key}", getattr(self, key))
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("train.min_lr_ratio", f"is {self.min_lr_ratio}; allowed: 0 to 1")
        if self.warmup_steps > self.steps:
            raise ConfigError(
                "train.warmup_steps", f"is {self.warmup_steps}, more than train.steps={self.steps}"
            )
        self._check_decay()
        self._check_profile()
        if self.spike_factor and self.spike_factor <= 1.0:
            raise ConfigError(
                "train.spike_factor",
                f"is {self.spike_factor}: a spike is a loss above this multiple of the recent "
                "median, so it must be above 1 (e.g. 2), or 0 to never skip one",
            )
        non_negative("train.spike_factor", self.spike_factor)
        for key in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"train.{key}", f"is {getattr(self, key)}; allowed: [0, 1)")
        if not 0.0 <= self.muon_momentum < 1.0:
            raise ConfigError("train.muon_momentum", f"is {self.muon_momentum}; allowed: [0, 1)")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError("train.zero_stage", f"is {self.zero_stage}; allowed: 0, 1, 2, 3")
        if self.optimizer == "muon" and self.zero_stage and self.grad_clip:
            raise ConfigError(
                "train.grad_clip",
                f"is {self.grad_clip} with train.optimizer=muon and train.zero_stage="
                f"{self.zero_stage}: DeepSpeed's ZeRO 1-3 Muon clips the orthogonalised update "
                "(norm about 80 at the tiny preset), not the gradient, which shrinks every step;"
                " set train.grad_clip=0 (Muon's step does not scale with the gradient) or use "
                "train.zero_stage=0, where the gradient is clipped",
            )
        if self.global_batch_size % self.micro_batch_size:
            raise ConfigError(
                "train.global_batch_size",
                f"is {self.global_batch_size}, not a multiple of "
                f"train.micro_batch_size={self.micro_batch_size}",
            )

    def _check_profile(self) -> None:
        """The profile window: two positive numbers, inside the run."""
        if not self.profile:
            return
        if len(self.profile) != 2 or min(self.profile) < 1:
            raise ConfigError(
                "train.profile",
                f"is {self.profile}; give [first step, number of steps], both 1 or more "
                "(e.g. [10, 3]), or [] to record nothing",
            )
        first, count = self.profile
        if first + count - 1 > self.steps:
            raise ConfigError(
                "train.profile",
                f"records steps {first} to {first + count - 1}, past the end of the run "
                f"(train.steps={self.steps}); start it earlier or record fewer steps",
            )

    def _check_decay(self) -> None:
        """The WSD decay: a fraction in (0, 1], starting after the warmup, before the end."""
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ConfigError(
                "train.decay_fraction", f"is {self.decay_fraction}; allowed: above 0, up to 1"
            )
        if self.decay_from and self.schedule != "wsd":
            raise ConfigError(
                "train.decay_from",
                f"is {self.decay_from} with train.schedule={self.schedule}: only a wsd schedule "
                "has a decay to start; set train.schedule=wsd, or train.decay_from=0",
            )
        if self.schedule != "wsd":
            return
        start = self.decay_start
        key = "train.decay_from" if self.decay_from else "train.decay_fraction"
        if start >= self.steps:
            raise ConfigError(
                key, f"starts the decay at step {start}, at or after the end (train.steps="
                f"{self.steps}); start it earlier, or raise train.steps to where it should end",
            )  # fmt: skip
        if start < self.warmup_steps:
            raise ConfigError(
                key, f"starts the decay at step {start}, before the warmup ends at step "
                f"{self.warmup_steps}; start it later, or shorten train.warmup_steps",
            )  # fmt: skip

    @property
    def decay_start(self) -> int:
        """The step a wsd schedule's decay starts at (train.decay_from, or the fraction)."""
        if self.decay_from:
            return self.decay_from
        return self.steps - max(1, round(self.decay_fraction * self.steps))
