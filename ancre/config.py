"""The run configuration: one typed schema, one merge order, validation that never mutates.

A run is described by an :class:`AncreConfig`, merged with OmegaConf in the order
``defaults <- YAML file <- command-line dotlist`` (``train.steps=100``). The merged
config is checked by :func:`validate`, which raises :class:`ConfigError` naming the key
and what is allowed; it never changes a value. The resolved config is written into the
run folder with :func:`save_config` and read back with :func:`load_config`.

This module imports nothing else from ``ancre``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

MODEL_PRESETS = ("tiny", "60m", "130m", "350m", "1b", "7b")
TOPOLOGY_KINDS = ("cascaded", "ancre", "uniform", "fixed")
PRUNE_MODES = ("none", "top_k", "mass")
MIX_BACKENDS = ("auto", "reference", "triton")
ATTENTION_BACKENDS = ("auto", "sdpa", "flash_attn")
ACTIVATION_CHECKPOINTING = ("none", "blocks", "every_k")
DATA_SOURCES = ("local", "hub")
PACKING_MODES = ("docs", "none")
TOKENIZER_MODELS = ("unigram", "bpe")
PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("adamw", "adam_atan2", "muon")
WANDB_MODES = ("disabled", "offline", "online")


class ConfigError(ValueError):
    """A config key holds a value the schema does not allow.

    Attributes:
        key: Dotted name of the offending key (``train.global_batch_size``), or the file.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


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
    attention: str = "auto"
    """Attention implementation: sdpa (torch's scaled_dot_product_attention, causal),
    flash_attn (the flash-attn package; CUDA, bf16) or auto (flash_attn on CUDA when it
    imports, else sdpa)."""
    init_from: str | None = None
    """Folder written by ``ancre convert``: start from its weights (a new run, fresh
    optimiser and data position) instead of the random initialisation."""


@dataclass(frozen=True)
class TopologyConfig:
    """The residual wiring: the L x (L+1) connection matrix."""

    kind: str = "ancre"
    """cascaded (plain Llama), ancre (learned softmax rows), uniform (frozen 1/(j+1)) or
    fixed (the frozen edges of topology.edges)."""
    edges: str = ""
    """For kind fixed: comma-separated edges i:j (or i:j@weight, default weight 1), each
    adding the output of layer i (0 = the input) to the output of layer j, e.g. "0:2,2:3"."""
    temperature: float = 1e-2
    """Softmax temperature tau of the ancre rows: P[j] = softmax(theta_j / tau)."""
    lr_multiplier: float = 1.0
    """Learning rate of the topology logits as a multiple of train.lr."""
    backend: str = "auto"
    """Implementation of the weighted sum: reference (plain PyTorch), triton (fused
    kernels; CUDA) or auto (triton on CUDA when it imports, else reference)."""
    freeze_at: int = 0
    """For kind ancre: after this many optimiser steps the learned matrix is frozen
    (pruned by topology.prune); the logits then get no gradient and no update, and the
    mix reads only the kept states (ancre/model/freeze.py). 0 never freezes."""
    prune: str = "none"
    """At the freeze, what each row keeps (renormalised to sum to one): none (every
    entry), top_k (its topology.prune_k largest) or mass (its fewest largest entries
    that reach topology.prune_mass of the row)."""
    prune_k: int = 2
    """With prune top_k: entries kept per row (rows with fewer keep all of theirs)."""
    prune_mass: float = 0.9
    """With prune mass: the fraction of each row's weight the kept entries reach, in
    (0, 1]."""


@dataclass(frozen=True)
class DataConfig:
    """Where documents come from and how they become token sequences."""

    source: str = "local"
    """local: C4-format JSON-lines shards (.json.gz or .jsonl) under data.path; hub: stream
    data.hub_name from the Hugging Face hub."""
    path: str = "data/sample"
    """Folder holding the shards, or a glob matching them (data.source: local)."""
    hub_name: str = "allenai/c4"
    """Dataset streamed when data.source is hub."""
    hub_subset: str = "en"
    """Configuration of the hub dataset."""
    text_field: str = "text"
    """Key of each JSON line (or hub example) that holds the document text."""
    tokenizer: str | None = None
    """Path to a sentencepiece .model file; null trains one on the training shards."""
    tokenizer_vocab_size: int = 4096
    """Vocabulary size of a tokenizer trained by the run (data.tokenizer: null)."""
    tokenizer_model: str = "unigram"
    """Algorithm of a tokenizer trained by the run: unigram or bpe."""
    seq_len: int = 256
    """Tokens per training sequence (the model sees seq_len inputs and seq_len targets)."""
    packing: str = "docs"
    """docs: documents joined with EOS and cut into windows with no padding; none: one
    window per document, truncated or padded, padding masked out of the loss."""
    num_workers: int = 0
    """DataLoader worker processes per rank that read and tokenize; 0 reads in the trainer."""
    shuffle: bool = True
    """Read the training shards in a seeded random order, new each epoch."""


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
    """Final learning rate of the cosine decay as a fraction of lr."""
    warmup_steps: int = 100
    """Steps of linear warmup from 0 to lr."""
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
    activation_checkpointing: str = "none"
    """Recompute block internals in the backward pass: none, blocks (every block) or
    every_k (every train.checkpoint_every_k-th block). The hidden states the topology
    mixes are always kept."""
    checkpoint_every_k: int = 2
    """With activation_checkpointing every_k: recompute blocks 0, k, 2k, ..."""
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
    dist_timeout_s: int = 300
    """Seconds a collective (all-reduce, barrier) waits for the other processes before
    failing, so a dead or unreachable peer stops the run instead of hanging it."""


@dataclass(frozen=True)
class EvalConfig:
    """Validation on a fixed set of held-out tokens."""

    every: int = 0
    """Evaluate every this many steps; 0 evaluates at the start and at the end only."""
    tokens: int = 10_000_000
    """Validation target tokens (rounded up to whole sequences); the same tokens whatever
    the number of processes."""
    micro_batch_size: int = 8
    """Sequences per process per evaluation forward pass."""


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


@dataclass(frozen=True)
class LoggingConfig:
    """Where metrics go besides metrics.jsonl."""

    wandb: str = "disabled"
    """Weights & Biases: disabled, offline (files in the run folder) or online."""
    wandb_project: str = "ancre"
    """Weights & Biases project name."""


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


def load_config(
    path: str | Path | Sequence[str | Path] | None = None, overrides: Sequence[str] = ()
) -> AncreConfig:
    """Merges defaults, YAML files and dotlist overrides, then validates the result.

    Args:
        path: A YAML file, or several merged in order (a base config, then fragments
            such as ``configs/data/c4.yaml``); None uses the defaults alone.
        overrides: ``key=value`` strings, e.g. ``["train.steps=100"]``; they win over
            the files.

    Returns:
        The validated config.

    Raises:
        ConfigError: The file is missing or unreadable, a key is unknown, a value has the
            wrong type, or a value is not allowed.
    """
    paths = [] if path is None else [path] if isinstance(path, str | Path) else list(path)
    merged = OmegaConf.structured(AncreConfig)
    try:
        for file in paths:
            merged = OmegaConf.merge(merged, _read_yaml(Path(file)))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(item, "an override must be key=value, e.g. train.steps=100")
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([item]))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise _named(error) from None
    assert isinstance(config, AncreConfig)
    validate(config)
    return config


def save_config(config: AncreConfig, path: str | Path) -> None:
    """Writes the resolved config as YAML; :func:`load_config` reads it back unchanged.

    Args:
        config: The config to write.
        path: Destination file.
    """
    Path(path).write_text(config_yaml(config))


def config_yaml(config: AncreConfig) -> str:
    """The resolved config as YAML text (what :func:`save_config` writes)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def config_dict(config: AncreConfig) -> dict[str, Any]:
    """Returns the config as nested plain dicts (for metrics sinks and manifests)."""
    return OmegaConf.to_container(OmegaConf.structured(config))  # type: ignore[return-value]


def flat_config(config: AncreConfig) -> dict[str, Any]:
    """The config as dotted keys and leaf values: ``{"train.lr": 0.001, ...}``."""
    flat: dict[str, Any] = {}

    def walk(tree: dict[str, Any], prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(config_dict(config), "")
    return flat


def validate(config: AncreConfig) -> None:
    """Checks every value against what the schema allows.

    Shape checks that need a preset's numbers live with the presets in
    ``ancre.model.presets``, and the batch check that needs the world size in
    :func:`check_world_size`.

    Args:
        config: The config to check; it is not changed.

    Raises:
        ConfigError: The first value that is not allowed, with its key.
    """
    _folder_name("run.name", config.run.name)
    _choice("model.preset", config.model.preset, MODEL_PRESETS, optional=True)
    _choice("model.attention", config.model.attention, ATTENTION_BACKENDS)
    _choice("topology.kind", config.topology.kind, TOPOLOGY_KINDS)
    _choice("topology.backend", config.topology.backend, MIX_BACKENDS)
    _choice("data.source", config.data.source, DATA_SOURCES)
    _choice("data.packing", config.data.packing, PACKING_MODES)
    _choice("data.tokenizer_model", config.data.tokenizer_model, TOKENIZER_MODELS)
    _choice("train.precision", config.train.precision, PRECISIONS)
    _choice("train.optimizer", config.train.optimizer, OPTIMIZERS)
    _choice(
        "train.activation_checkpointing",
        config.train.activation_checkpointing,
        ACTIVATION_CHECKPOINTING,
    )
    _choice("logging.wandb", config.logging.wandb, WANDB_MODES)

    if config.model.preset is None:
        for key in ("hidden_size", "intermediate_size", "num_layers", "num_heads"):
            if getattr(config.model, key) is None:
                raise ConfigError(f"model.{key}", "must be set when model.preset is null")
    for key in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "vocab_size"):
        _positive(f"model.{key}", getattr(config.model, key), optional=True)
    _positive("model.max_seq_len", config.model.max_seq_len, optional=True)
    _positive("model.rope_theta", config.model.rope_theta)
    _positive("model.norm_eps", config.model.norm_eps)
    _positive("model.init_std", config.model.init_std)
    _positive("topology.temperature", config.topology.temperature)
    if config.topology.kind == "fixed" and not config.topology.edges.strip():
        raise ConfigError("topology.edges", 'kind fixed needs edges, e.g. "0:2,2:3"')
    _non_negative("topology.lr_multiplier", config.topology.lr_multiplier)
    _check_freeze(config)
    _positive("data.tokenizer_vocab_size", config.data.tokenizer_vocab_size)
    _positive("data.seq_len", config.data.seq_len)
    _non_negative("data.num_workers", config.data.num_workers)
    if not config.data.text_field:
        raise ConfigError("data.text_field", "must name the JSON key that holds the text")
    if config.model.max_seq_len is not None and config.model.max_seq_len < config.data.seq_len:
        raise ConfigError(
            "model.max_seq_len",
            f"is {config.model.max_seq_len}, shorter than data.seq_len={config.data.seq_len}",
        )

    train = config.train
    for key in (
        "steps", "micro_batch_size", "global_batch_size", "log_every", "max_bad_steps",
        "dist_timeout_s",
    ):  # fmt: skip
        _positive(f"train.{key}", getattr(train, key))
    _positive("train.lr", train.lr)
    _positive("train.muon_lr", train.muon_lr)
    if not 0.0 <= train.muon_momentum < 1.0:
        raise ConfigError("train.muon_momentum", f"is {train.muon_momentum}; allowed: [0, 1)")
    if not 0.0 <= train.min_lr_ratio <= 1.0:
        raise ConfigError("train.min_lr_ratio", f"is {train.min_lr_ratio}; allowed: 0 to 1")
    _non_negative("train.warmup_steps", train.warmup_steps)
    if train.warmup_steps > train.steps:
        raise ConfigError(
            "train.warmup_steps", f"is {train.warmup_steps}, more than train.steps={train.steps}"
        )
    _non_negative("train.weight_decay", train.weight_decay)
    for key in ("beta1", "beta2"):
        if not 0.0 <= getattr(train, key) < 1.0:
            raise ConfigError(f"train.{key}", f"is {getattr(train, key)}; allowed: [0, 1)")
    _positive("train.eps", train.eps)
    _non_negative("train.grad_clip", train.grad_clip)
    _positive("train.checkpoint_every_k", train.checkpoint_every_k)
    _non_negative("train.peak_flops", train.peak_flops)
    _non_negative("train.cpu_threads", train.cpu_threads)
    if train.zero_stage not in (0, 1, 2, 3):
        raise ConfigError("train.zero_stage", f"is {train.zero_stage}; allowed: 0, 1, 2, 3")
    if train.optimizer == "muon" and train.zero_stage and train.grad_clip:
        raise ConfigError(
            "train.grad_clip",
            f"is {train.grad_clip} with train.optimizer=muon and train.zero_stage="
            f"{train.zero_stage}: DeepSpeed's ZeRO 1-3 Muon clips the orthogonalised update "
            "(norm about 80 at the tiny preset), not the gradient, which shrinks every step; "
            "set train.grad_clip=0 (Muon's step does not scale with the gradient) or use "
            "train.zero_stage=0, where the gradient is clipped",
        )
    if train.global_batch_size % train.micro_batch_size:
        raise ConfigError(
            "train.global_batch_size",
            f"is {train.global_batch_size}, not a multiple of "
            f"train.micro_batch_size={train.micro_batch_size}",
        )

    _non_negative("eval.every", config.eval.every)
    _positive("eval.tokens", config.eval.tokens)
    _positive("eval.micro_batch_size", config.eval.micro_batch_size)
    _non_negative("checkpoint.every", config.checkpoint.every)
    _non_negative("checkpoint.topology_every", config.checkpoint.topology_every)
    _non_negative("checkpoint.keep_last", config.checkpoint.keep_last)
    if not config.checkpoint.resume:
        raise ConfigError("checkpoint.resume", "allowed: auto, never, or a checkpoint folder")
    if config.checkpoint.resume not in ("auto", "never") and config.run.overwrite:
        raise ConfigError(
            "run.overwrite", "cannot be true while resuming from checkpoint.resume=PATH"
        )


def _check_freeze(config: AncreConfig) -> None:
    """topology.freeze_at and topology.prune: only for a learned matrix, within the run."""
    topology = config.topology
    _choice("topology.prune", topology.prune, PRUNE_MODES)
    _positive("topology.prune_k", topology.prune_k)
    if not 0.0 < topology.prune_mass <= 1.0:
        raise ConfigError("topology.prune_mass", f"is {topology.prune_mass}; allowed: (0, 1]")
    _non_negative("topology.freeze_at", topology.freeze_at)
    if topology.freeze_at and topology.kind != "ancre":
        raise ConfigError(
            "topology.freeze_at",
            f"is {topology.freeze_at} with topology.kind={topology.kind}, whose matrix is "
            "never learned; freezing applies to kind ancre (or set freeze_at=0)",
        )
    if topology.freeze_at > config.train.steps:
        raise ConfigError(
            "topology.freeze_at",
            f"is {topology.freeze_at}, after the last step (train.steps={config.train.steps})",
        )
    if topology.prune != "none" and not topology.freeze_at:
        raise ConfigError(
            "topology.prune", f"is {topology.prune}: pruning happens at the freeze; set "
            "topology.freeze_at to a step",
        )  # fmt: skip


def check_world_size(config: AncreConfig, world_size: int) -> int:
    """Checks that the global batch splits evenly over the processes.

    Args:
        config: A validated config.
        world_size: Number of training processes.

    Returns:
        The number of gradient-accumulation micro-steps per optimiser step.

    Raises:
        ConfigError: ``train.global_batch_size`` is not a multiple of
            ``train.micro_batch_size x world_size``.
    """
    per_step = config.train.micro_batch_size * world_size
    if config.train.global_batch_size % per_step:
        raise ConfigError(
            "train.global_batch_size",
            f"is {config.train.global_batch_size}, not a multiple of train.micro_batch_size "
            f"({config.train.micro_batch_size}) x world size ({world_size}) = {per_step}; "
            "change one of them",
        )
    return config.train.global_batch_size // per_step


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(str(path), "no such config file")
    try:
        with open(path, encoding="utf-8") as handle:  # marks in errors name the file
            content = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise ConfigError(str(path), f"not valid YAML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), f"not UTF-8 text ({error})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(str(path), "the top level must be a mapping of sections")
    known = {f.name for f in fields(AncreConfig)}
    for section, values in content.items():
        if section not in known:
            raise ConfigError(
                str(section), f"unknown section in {path}; allowed: {', '.join(sorted(known))}"
            )
        if values is not None and not isinstance(values, dict):
            allowed = ", ".join(_keys_beside(f"{section}.key"))
            raise ConfigError(
                str(section), f"in {path} must be a mapping of keys ({allowed}), not {values!r}"
            )
    return OmegaConf.create(content)


def _named(error: OmegaConfBaseException) -> ConfigError:
    key = getattr(error, "full_key", None) or "config"
    first_line = str(getattr(error, "msg", error)).splitlines()[0]
    if isinstance(error, ConfigKeyError):
        if "Did you mean" not in first_line and (suggestion := _suggest(key)):
            first_line += f"; did you mean {suggestion}?"
        first_line += f"; allowed: {', '.join(_keys_beside(key))}"
    return ConfigError(key, first_line)


def _suggest(full_key: str) -> str | None:
    """The schema key closest to a mistyped one (``steps`` -> ``train.steps``)."""
    every = [
        f"{section.name}.{f.name}"
        for section in fields(AncreConfig)
        for f in fields(get_type_hints(AncreConfig)[section.name])
    ]
    last = full_key.split(".")[-1]
    same_name = [key for key in every if key.endswith("." + last)]
    if len(same_name) == 1:
        return same_name[0]
    close = difflib.get_close_matches(full_key, every, n=1, cutoff=0.75)
    return close[0] if close else None


def _keys_beside(full_key: str) -> list[str]:
    """The schema's keys in the section that holds ``full_key`` (sections for a top key)."""
    schema: Any = AncreConfig
    for part in full_key.split(".")[:-1]:
        schema = get_type_hints(schema).get(part)
        if not is_dataclass(schema):
            return []
    return [f.name for f in fields(schema)]


def _folder_name(key: str, value: str) -> None:
    """A single plain path component: the run's folder inside run.out_dir."""
    bad = (
        "is empty" if not value.strip()
        else "is a reference to a folder, not a name" if value.strip() in (".", "..")
        else "holds a path separator" if any(c in value for c in "/\\")
        else "holds a NUL character" if "\0" in value
        else "starts or ends with a space" if value != value.strip()
        else None
    )  # fmt: skip
    if bad:
        raise ConfigError(
            key,
            f"{value!r} {bad}; it must be one plain folder name such as 'quickstart' "
            "(put the parent folder in run.out_dir)",
        )


def _choice(key: str, value: str | None, allowed: Sequence[str], optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in allowed:
        raise ConfigError(key, f"is {value!r}; allowed: {', '.join(allowed)}")


def _positive(key: str, value: float | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or not math.isfinite(value) or value <= 0:
        raise ConfigError(key, f"is {value}; it must be a positive number")


def _non_negative(key: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(key, f"is {value}; it must be zero or positive")
