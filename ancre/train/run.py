"""A whole run: set up (or resume) the run folder, data, model and engine, then train.

Resume (``checkpoint.resume``):

- ``auto``: continue from the checkpoint ``latest`` names, after verifying it; start
  from scratch when the run has none. ``run.overwrite: true`` starts over instead.
- ``never``: start from scratch; a run folder that already holds a run is refused
  unless ``run.overwrite: true``.
- a checkpoint folder: continue from it (into this run's folder).

Resuming restores the weights, the optimiser (with its fp32 master weights), the
learning-rate schedule, the data position of every process, the random states and
the loop's own state, and rewinds the run folder to the checkpoint's step: a run
killed at any moment and resumed ends with the metrics an uninterrupted run writes.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file

from ancre.atomic import write_bytes_atomic
from ancre.checkpoint import (
    MANIFEST,
    CheckpointError,
    TrainerState,
    incomplete_checkpoints,
    latest_checkpoint,
    read_rank_state,
    read_trainer_state,
    rewind_run_folder,
    set_rng_state,
    verify_checkpoint,
)
from ancre.config import (
    AncreConfig,
    check_world_size,
    config_dict,
    flat_config,
    load_config,
    save_config,
)
from ancre.data.loader import TrainLoader, validation_set
from ancre.data.sources import check_data, split_texts
from ancre.data.tokenizer import Tokenizer, train_tokenizer
from ancre.model import Transformer, build_model
from ancre.train.engine import (
    DistributedContext,
    Engine,
    barrier,
    broadcast_from_main,
    init_distributed,
)
from ancre.train.metrics import JsonlSink, MetricsLogger, MetricsSink, WandbSink
from ancre.train.trainer import Trainer, evaluate

logger = logging.getLogger("ancre")


def run_folder(config: AncreConfig) -> Path:
    """The folder of a run: ``<run.out_dir>/<run.name>``."""
    return Path(config.run.out_dir) / config.run.name


def resume_point(config: AncreConfig, run_dir: Path) -> Path | None:
    """The checkpoint a run continues from (verified), or None to start from scratch.

    Raises:
        FileExistsError: ``resume: never`` and the folder holds a run, without overwrite;
            or ``resume: PATH`` into another run's non-empty folder.
        CheckpointError: The checkpoint to resume from does not verify.
    """
    resume = config.checkpoint.resume
    if config.run.overwrite:
        return None
    if resume == "never":
        if (run_dir / "metrics.jsonl").exists():
            raise FileExistsError(
                f"{run_dir} already holds a run and checkpoint.resume=never; set "
                "run.overwrite=true to start over there, or choose another run.name"
            )
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    folder = Path(resume)
    verify_checkpoint(folder)
    own_run = folder.resolve().parent.parent == run_dir.resolve()
    if not own_run and run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(
            f"checkpoint.resume={resume} continues into {run_dir}, which holds another run; "
            "choose a new run.name"
        )
    return folder


def _decide_resume(config: AncreConfig, run_dir: Path, context: DistributedContext) -> Path | None:
    """The main process finds and verifies the resume point; every process learns it.

    Errors found there are raised on every process, so none is left waiting.
    """
    decision: tuple[str, object] = ("start", None)
    if context.is_main:
        try:
            folder = resume_point(config, run_dir)
            if folder is not None:
                _check_resumable(folder, context)
                _report_changes(folder, config)
            decision = ("resume", str(folder)) if folder else ("start", None)
        except (CheckpointError, FileExistsError) as error:
            decision = ("error", error)
    kind, value = broadcast_from_main(decision)
    if kind == "error":
        raise value  # type: ignore[misc]
    return Path(value) if kind == "resume" else None  # type: ignore[arg-type]


def _report_changes(folder: Path, config: AncreConfig) -> None:
    before = flat_config(load_config(folder / "config.yaml"))
    after = flat_config(config)
    changed = [k for k in after if before.get(k) != after[k] and k != "checkpoint.resume"]
    if changed:
        logger.warning(
            "resuming with settings that differ from the checkpoint's: %s",
            ", ".join(f"{k}={before.get(k)!r}->{after[k]!r}" for k in changed),
        )


def prepare_run_folder(run_dir: Path, resume_from: Path | None, overwrite: bool) -> None:
    """Readies the run folder on the main process: fresh, or rewound to a checkpoint.

    Args:
        run_dir: The run folder.
        resume_from: The checkpoint the run continues from, or None.
        overwrite: Delete what an earlier run left in the folder.
    """
    for folder in incomplete_checkpoints(run_dir):
        logger.warning("ignoring incomplete checkpoint %s (latest does not name it)", folder)
    if resume_from is None and run_dir.exists() and (overwrite or any(run_dir.iterdir())):
        logger.info("starting %s from scratch", run_dir)
        shutil.rmtree(run_dir)
    (run_dir / "topology").mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    if resume_from is not None:
        step = read_trainer_state(resume_from).step
        rewind_run_folder(run_dir, step)
        logger.info("resuming from %s (step %d)", resume_from, step)


def load_tokenizer(
    config: AncreConfig, run_dir: Path, context: DistributedContext, resume_from: Path | None
) -> Tokenizer:
    """The run's tokenizer, kept as ``<run>/tokenizer.model`` so the run folder stands alone.

    It is the resumed checkpoint's, a copy of ``data.tokenizer``, or one the main
    process trains on the training data; the other processes wait for it.
    """
    path = run_dir / "tokenizer.model"
    if context.is_main:
        if resume_from is not None:
            write_bytes_atomic(path, (resume_from / "tokenizer.model").read_bytes())
        elif config.data.tokenizer is not None:
            write_bytes_atomic(path, Tokenizer(config.data.tokenizer).path.read_bytes())
        elif not path.exists():
            documents = split_texts(config.data, "train", Counter())
            train_tokenizer(
                documents, path, config.data.tokenizer_vocab_size, config.data.tokenizer_model
            )
    barrier()
    return Tokenizer(path)


def _check_resumable(folder: Path, context: DistributedContext) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())  # verified by resume_point
    if manifest["world_size"] != context.world_size:
        raise CheckpointError(
            f"{folder} was written by {manifest['world_size']} process(es) and this run has "
            f"{context.world_size}: the data position and the ZeRO partitions belong to each "
            f"process. Resume with {manifest['world_size']} (e.g. torchrun --nproc_per_node "
            f"{manifest['world_size']} -m ancre.cli train ...), or start a new run from its "
            f"weights: ancre convert {folder} OUT_DIR, then model.init_from=OUT_DIR"
        )


def _init_weights(model: Transformer, folder: str) -> None:
    weights = load_file(str(Path(folder) / "model.safetensors"))
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    logger.info("initialised the weights from %s", folder)


def _metric_sinks(config: AncreConfig, run_dir: Path) -> list[MetricsSink]:
    sinks: list[MetricsSink] = [JsonlSink(run_dir / "metrics.jsonl")]
    if config.logging.wandb != "disabled":
        sinks.append(
            WandbSink(
                config.logging.wandb,
                config.logging.wandb_project,
                config.run.name,
                run_dir,
                config_dict(config),
            )  # fmt: skip
        )
    return sinks


def _format_matrix(matrix: list[list[float]]) -> str:
    header = "      " + " ".join(f"{'h' + str(i):>6}" for i in range(len(matrix) + 1))
    rows = [
        f"blk{j:<3}" + " ".join(f"{v:6.3f}" if i <= j else f"{'':6}" for i, v in enumerate(row))
        for j, row in enumerate(matrix)
    ]
    return "\n".join([header, *rows])


def train(config: AncreConfig) -> Path:
    """Runs (or resumes) a training run and returns its folder.

    Args:
        config: A validated config.

    Returns:
        The run folder.
    """
    check_data(config.data)
    context = init_distributed(config.train.dist_timeout_s)
    _setup_logging(context)
    accumulation = check_world_size(config, context.world_size)
    run_dir = run_folder(config)
    resume_from = _decide_resume(config, run_dir, context)
    if context.is_main:
        prepare_run_folder(run_dir, resume_from, config.run.overwrite)
        save_config(config, run_dir / "config.yaml")
    barrier()
    tokenizer = load_tokenizer(config, run_dir, context, resume_from)
    torch.manual_seed(config.run.seed)
    model = build_model(config, tokenizer.vocab_size)
    if config.model.init_from is not None and resume_from is None:
        _init_weights(model, config.model.init_from)
    if context.is_main:
        logger.info(
            "model: %d blocks, hidden %d, %.2fM parameters, topology %s; %d process(es)",
            model.shape.num_layers, model.shape.hidden_size, model.num_parameters() / 1e6,
            config.topology.kind, context.world_size,
        )  # fmt: skip
    engine = Engine(model, config, context, accumulation)
    batches = TrainLoader(
        config.data, tokenizer, config.train.micro_batch_size, context.rank, context.world_size,
        config.run.seed,
    )  # fmt: skip
    state: TrainerState | None = None
    if resume_from is not None:
        engine.load(resume_from / "engine")
        saved = read_rank_state(resume_from, context.rank)
        batches.load_state_dict(saved["data"])
        set_rng_state(saved["rng"])
        state = read_trainer_state(resume_from)
    val = validation_set(config.data, tokenizer, config.eval.tokens)
    metrics = MetricsLogger(_metric_sinks(config, run_dir) if context.is_main else [])
    trainer = Trainer(config, run_dir, engine, batches, val, tokenizer, metrics, state)
    try:
        if trainer.step >= config.train.steps:
            logger.info("%s is complete (step %d); nothing to do", run_dir, trainer.step)
        else:
            trainer.fit()
        snapshot = engine.topology_snapshot(trainer.step, trainer.tokens)
        if context.is_main and config.topology.kind != "cascaded":
            logger.info("learned connection matrix (row j: weights block j puts on h_0..h_j):")
            logger.info("\n%s", _format_matrix(snapshot.matrix))
        if context.is_main:
            logger.info("run folder: %s", run_dir)
    finally:
        metrics.close()
        engine.close()
    return run_dir


def evaluate_checkpoint(folder: Path, overrides: list[str]) -> dict[str, float] | None:
    """Loads a checkpoint's weights through DeepSpeed and evaluates them.

    Works with any number of processes, whatever the checkpoint was written with.

    Args:
        folder: A checkpoint folder (``<run>/checkpoints/step_XXXXXXXX``).
        overrides: Dotlist overrides of the checkpoint's config (e.g. ``eval.tokens=4096``).

    Returns:
        On the main process, the checkpoint's step and its ``val_loss``, ``val_ppl`` and
        ``val_tokens``; None on the others.
    """
    manifest = verify_checkpoint(folder)
    config = load_config(folder / "config.yaml", overrides)
    context = init_distributed(config.train.dist_timeout_s)
    _setup_logging(context)
    tokenizer = Tokenizer(folder / "tokenizer.model")
    torch.manual_seed(config.run.seed)
    model = build_model(config, tokenizer.vocab_size)
    engine = Engine(model, config, context, check_world_size(config, context.world_size))
    try:
        engine.load(folder / "engine", weights_only=True)
        val = validation_set(config.data, tokenizer, config.eval.tokens)
        result = evaluate(engine, *val, config.eval.micro_batch_size)
    finally:
        engine.close()
    return {"step": manifest["step"], **result} if context.is_main else None


def _setup_logging(context: DistributedContext) -> None:
    logging.basicConfig(
        level=logging.INFO if context.is_main else logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
