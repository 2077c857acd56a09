"""The sections of the run configuration: typed fields, each documented, each checked.

Every section is a frozen dataclass whose ``check()`` tests its own fields and raises
:class:`ConfigError` naming the key; :class:`AncreConfig` checks every section and the
rules that span two of them. A check never changes a value.

This module imports nothing else from ``ancre``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ancre.config.checks import ConfigError, choice, folder_name, non_negative, positive
from ancre.config.data import DataConfig
from ancre.config.topology import TopologyConfig
from ancre.config.train import TrainConfig

MODEL_PRESETS = ("tiny", "60m", "130m", "350m", "1b", "7b")
ATTENTION_BACKENDS = ("auto", "sdpa", "flash_attn")
INIT_SCHEMES = ("normal", "depth_scaled")
LAUREL_VARIANTS = ("none", "rw", "lr", "rw_lr")
WANDB_MODES = ("disabled", "offline", "online")


@dataclass(frozen=True)
class RunConfig:
    """Where a run lives and how it is seeded."""

    name: str = "run"
    """Name of the run; its folder is ``<out_dir>/<name>``. One plain folder name: not
    empty, not ``.`` or ``..``, no path separator."""
    out_dir: str = "runs"
    """Parent folder of run folders."""
    seed: int = 0
    """Seed of the model initialisation and of every random stream of the run."""
    overwrite: bool = False
    """Start over in a run folder that already holds a run, deleting what that run wrote
    (only in a folder that is recognisably an ancre run folder). Off, starting the same
    command again resumes."""

    def check(self) -> None:
        """Raises ConfigError naming the first field of this section that is not allowed."""
        folder_name("run.name", self.name)


@dataclass(frozen=True)
class ModelConfig:
    """The shape of the Llama decoder: a named preset, with any field set here winning."""

    preset: str | None = "tiny"
    """Named size (tiny, 60m, 130m, 350m, 1b, 7b), or null to give every shape field."""
    hidden_size: int | None = None
    """Width of the residual stream; overrides the preset."""
    intermediate_size: int | None = None
    """Width of the SwiGLU hidden layer; overrides the preset."""
    num_layers: int | None = None
    """Number of decoder blocks L; overrides the preset."""
    num_heads: int | None = None
    """Number of attention heads; must divide hidden_size."""
    num_kv_heads: int | None = None
    """Key and value heads (grouped-query attention: each serves num_heads / num_kv_heads
    query heads); null gives every query head its own (multi-head attention)."""
    vocab_size: int | None = None
    """Vocabulary size; null takes the tokenizer's. When set it must equal the tokenizer's."""
    max_seq_len: int | None = None
    """Longest sequence the rotary tables cover; null takes data.seq_len."""
    rope_theta: float = 10000.0
    """Base of the rotary embedding frequencies."""
    norm_eps: float = 1e-6
    """Epsilon of RMSNorm."""
    init_std: float = 0.02
    """Standard deviation of the normal initialisation of every weight matrix."""
    init: str = "normal"
    """normal: every weight matrix from N(0, init_std); depth_scaled: the attention and
    MLP output projections (wo, down) from N(0, init_std / sqrt(2 L)) instead, as GPT-2
    and Megatron do, so that the plain residual stream does not grow with depth."""
    attention: str = "auto"
    """Attention implementation: sdpa (torch's scaled_dot_product_attention, causal),
    flash_attn (the flash-attn package; CUDA, bf16) or auto (flash_attn on CUDA when it
    imports, else sdpa)."""
    init_from: str | None = None
    """Folder written by ``ancre convert``: start from its weights (a new run, fresh
    optimiser and data position) instead of the random initialisation. ``hf:FOLDER``
    starts from a local Hugging Face LlamaForCausalLM folder instead: its config.json
    decides the shape (model.preset becomes null) and its tokenizer the vocabulary; the
    topology's own weights start where the kind starts as the plain residual network
    (docs/export.md)."""

    laurel: str = "none"
    """LAuReL (learned augmented residual layers, docs/topologies.md) on both residual
    connections inside every block: none; rw (x' = a f(x) + b x, learned scalars a, b);
    lr (x' = f(x) + x + B A x, a learned rank-``laurel_rank`` map); rw_lr (x' = a f(x)
    + b (x + B A x)). Every variant starts as the plain block (a = b = 1, B = 0)."""
    laurel_rank: int = 16
    """Rank r of LAuReL's low-rank map B A (D x r and r x D) in the lr and rw_lr variants."""
    value_residual: bool = False
    """Value residual learning (ResFormer, docs/topologies.md): the attention of every block
    after the first reads V' = l1 V_1 + l2 V, V_1 the first block's values, (l1, l2)
    learned per block from (0.5, 0.5). Combines with every topology kind."""

    def check(self) -> None:
        """Raises ConfigError naming the first field of this section that is not allowed."""
        choice("model.preset", self.preset, MODEL_PRESETS, optional=True)
        choice("model.laurel", self.laurel, LAUREL_VARIANTS)
        positive("model.laurel_rank", self.laurel_rank)
        choice("model.attention", self.attention, ATTENTION_BACKENDS)
        choice("model.init", self.init, INIT_SCHEMES)
        shape_keys = ("hidden_size", "intermediate_size", "num_layers", "num_heads")
        if self.preset is None:
            for key in shape_keys:
                if getattr(self, key) is None:
                    raise ConfigError(f"model.{key}", "must be set when model.preset is null")
        for key in (*shape_keys, "num_kv_heads", "vocab_size", "max_seq_len"):
            positive(f"model.{key}", getattr(self, key), optional=True)
        for key in ("rope_theta", "norm_eps", "init_std"):
            positive(f"model.{key}", getattr(self, key))


@dataclass(frozen=True)
class EvalConfig:
    """Validation on a fixed set of held-out tokens."""

    every: int = 0
    """Evaluate every this many steps; 0 evaluates at the start and at the end only."""
    tokens: int = 10_000_000
    """Validation target tokens (rounded up to whole sequences); the same tokens whatever
    the number of processes."""
    micro_batch_size: int = 8
    """Sequences per process per evaluation forward pass (also the requests per forward
    pass of eval.tasks)."""
    tasks: str | None = None
    """Downstream tasks of lm-evaluation-harness run during training, comma-separated
    (e.g. "hellaswag,arc_easy"), on the main process; null runs none. Needs the lm-eval
    package (pip install 'ancre[eval]'); hub tasks need network access or the datasets
    cache. Their values go to metrics.jsonl as task/<task>/<metric>."""
    tasks_every: int = 0
    """Run eval.tasks every this many steps; 0 runs them once, at the end of training."""
    tasks_path: str | None = None
    """A folder of lm-eval task YAML files (one's own tasks over local data), searched
    before the harness's own tasks."""
    tasks_limit: int | None = None
    """Evaluate at most this many documents per task (a quick look); null evaluates all."""

    def check(self) -> None:
        """Raises ConfigError naming the first field of this section that is not allowed."""
        non_negative("eval.every", self.every)
        positive("eval.tokens", self.tokens)
        positive("eval.micro_batch_size", self.micro_batch_size)
        non_negative("eval.tasks_every", self.tasks_every)
        positive("eval.tasks_limit", self.tasks_limit, optional=True)
        if self.tasks is None and (self.tasks_every or self.tasks_path):
            raise ConfigError(
                "eval.tasks", "is null, so eval.tasks_every and eval.tasks_path have nothing to run"
            )


@dataclass(frozen=True)
class CheckpointConfig:
    """When the run folder receives checkpoints and topology snapshots."""

    every: int = 0
    """Save a checkpoint every this many steps; 0 saves at the end only."""
    topology_every: int = 50
    """Write a topology snapshot under topology/ every this many steps; 0 never."""
    keep_last: int = 0
    """Keep only the newest this many complete checkpoints; 0 keeps all."""
    resume: str = "auto"
    """auto: continue from the run folder's newest complete checkpoint (or start when it
    has none); never: start fresh (a non-empty run folder needs run.overwrite=true); or
    the path of a checkpoint folder to continue from."""
    allow_batch_change: bool = False
    """Let a resume use another train.global_batch_size (refused otherwise, since it
    changes the optimisation); the change is recorded in metrics.jsonl."""

    def check(self) -> None:
        """Raises ConfigError naming the first field of this section that is not allowed."""
        for key in ("every", "topology_every", "keep_last"):
            non_negative(f"checkpoint.{key}", getattr(self, key))
        if not self.resume:
            raise ConfigError("checkpoint.resume", "allowed: auto, never, or a checkpoint folder")


@dataclass(frozen=True)
class LoggingConfig:
    """Where metrics go besides metrics.jsonl."""

    wandb: str = "disabled"
    """Weights & Biases: disabled, offline (files in the run folder) or online."""
    wandb_project: str = "ancre"
    """Weights & Biases project name."""
    wandb_group: str | None = None
    """W&B group of the run; null: the run's name (ancre sweep sets the sweep's name)."""
    wandb_job_type: str | None = None
    """W&B job type of the run (ancre sweep sets the run's axes, e.g. kind=ancre)."""

    def check(self) -> None:
        """Raises ConfigError naming the first field of this section that is not allowed."""
        choice("logging.wandb", self.wandb, WANDB_MODES)


@dataclass(frozen=True)
class AncreConfig:
    """Everything a run needs; the sections mirror the YAML files."""

    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def check(self) -> None:
        """Checks every section, then the rules that span two sections.

        Raises:
            ConfigError: The first value that is not allowed, with its key.
        """
        for section in (
            self.run, self.model, self.topology, self.data, self.train, self.eval,
            self.checkpoint, self.logging,
        ):  # fmt: skip
            section.check()
        max_seq_len, seq_len = self.model.max_seq_len, self.data.seq_len
        if max_seq_len is not None and max_seq_len < seq_len:
            raise ConfigError(
                "model.max_seq_len", f"is {max_seq_len}, shorter than data.seq_len={seq_len}"
            )
        if self.topology.freeze_at > self.train.steps:
            raise ConfigError(
                "topology.freeze_at",
                f"is {self.topology.freeze_at}, after the last step "
                f"(train.steps={self.train.steps})",
            )
        if self.eval.tasks is not None and self.train.zero_stage == 3:
            raise ConfigError(
                "eval.tasks",
                "runs on the main process's copy of the weights, which train.zero_stage=3 "
                "partitions; use ZeRO 0-2, or evaluate checkpoints with ancre eval --tasks",
            )
        if self.checkpoint.resume not in ("auto", "never") and self.run.overwrite:
            raise ConfigError(
                "run.overwrite", "cannot be true while resuming from checkpoint.resume=PATH"
            )
