"""A whole run: check, claim the run folder, set up data, model and engine, then train.

``ancre.train.prepare`` makes sure a run that cannot go ahead changes nothing on disk;
``ancre.run_folder`` owns the folder and decides whether the run starts or resumes.

Resuming restores the weights, the optimiser (with its fp32 master weights), the
learning-rate schedule, the data position of every process, the random states and
the loop's own state, and rewinds the run folder to the checkpoint's step: a run
killed at any moment and resumed ends with the metrics an uninterrupted run writes.
Another number of processes or ZeRO stage is resumed too (``ancre.train.checkpointer``).
A stop signal (SIGTERM, SIGINT, SIGUSR1) ends the run at the next step boundary with a
checkpoint (``ancre.train.preemption``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ancre.checkpoint import CheckpointFolder
from ancre.config import AncreConfig, check_world_size, load_config
from ancre.config.hf_source import hf_folder
from ancre.data.loader import TrainLoader
from ancre.data.tokenizer import Tokenizer
from ancre.data.validation import ValidationSet, validation_set
from ancre.model import Transformer, build_model, resolve_shape
from ancre.model.llama_import import kept_at_start, llama_weights, with_shared_input_norms
from ancre.pretrained import read_conversion
from ancre.run_folder import RunFolder, RunLock, RunPlan
from ancre.sizing.plan import local_device_key, size_plan
from ancre.sizing.report import plan_summary
from ancre.snapshot import matrix_table
from ancre.tasks.in_training import TaskSchedule
from ancre.train.checkpointer import Resumption
from ancre.train.engine import (
    DistributedContext,
    Engine,
    any_process,
    describe_device,
    init_distributed,
    partitioned_construction,
    whole_parameters,
)
from ancre.train.evaluation import evaluate_set
from ancre.train.flops import flops_per_token
from ancre.train.launcher import launcher_rank, stop_with_launcher
from ancre.train.metrics import JsonlSink, MetricsLogger, MetricsSink
from ancre.train.preemption import StopRequested, StopSignals, stop_signals
from ancre.train.prepare import (
    check_inputs,
    claim_folder,
    known_tokenizer,
    on_main,
    prepare_folder,
    remove_empty_folders,
    run_tokenizer,
)
from ancre.train.schedule import schedule_change
from ancre.train.speedups import apply_speedups
from ancre.train.threads import apply_cpu_threads
from ancre.train.trainer import Trainer
from ancre.train.wandb_sink import WandbSink
from ancre.train.write_failures import DISK_FULL

logger = logging.getLogger("ancre")


class DiskFullError(RuntimeError):
    """A write failed for want of space; the message names the folder and what is intact."""


def _init_weights(model: Transformer, folder: str) -> None:
    source = hf_folder(folder)
    if source is not None:  # a stock Llama: the topology keeps its own start
        names = [name for name, _ in model.named_parameters()]
        weights = with_shared_input_norms(llama_weights(source), names)
        with whole_parameters(list(model.parameters())):
            missing, _ = model.load_state_dict(weights, strict=False)
        # check_inputs compared the names; what is left is the topology's and LAuReL's own
        assert all(kept_at_start(name) for name in missing), missing
        logger.info("initialised the weights from the Llama checkpoint %s (%d parameter(s) "
                    "of the topology and LAuReL at their start)", source, len(missing))  # fmt: skip
        return
    weights = read_conversion(folder).weights  # the format was checked by check_inputs
    with whole_parameters(list(model.parameters())):
        model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    logger.info("initialised the weights from %s", folder)


def _metric_sinks(config: AncreConfig, plan: RunPlan) -> list[MetricsSink]:
    sinks: list[MetricsSink] = [JsonlSink(plan.folder.metrics_file)]
    if config.logging.wandb != "disabled":
        sinks.append(WandbSink(config, plan.folder.wandb_dir, bool(plan.set_aside)))
    return sinks


def train(config: AncreConfig) -> Path:
    """Runs (or resumes) a training run and returns its folder.

    Args:
        config: A validated config.

    Returns:
        The run folder.

    Raises:
        StopRequested: A stop signal ended the run at a step boundary, with a checkpoint.
        NonFiniteLossError: Too many steps in a row had a non-finite loss.
    """
    check_inputs(config)
    _setup_logging(launcher_rank() == 0)
    context = init_distributed(config.train.dist_timeout_s)
    _setup_logging(context.is_main)
    logger.info("%s", describe_device(context))
    if (threads := apply_cpu_threads(config.train.cpu_threads, context.device)) is not None:
        logger.info("%s", threads)
    check_world_size(config, context.world_size)
    folder = RunFolder.of(config)
    lock = RunLock(folder.lock_file) if context.is_main else None
    stop = stop_signals()
    stop_with_launcher()  # a launcher killed with SIGKILL stops its workers too
    stop.on_abort = lock.release if lock else None
    if any_process(stop.requested, context.device):  # before anything is written
        raise StopRequested(stop.signal_name, None, None, stop.received_at)

    created: list[Path] = []

    def claim() -> RunPlan:
        assert lock is not None  # on_main runs it on the main process
        plan, made = claim_folder(config, lock, context.world_size)
        created.extend(made)
        return plan

    try:
        plan = on_main(context, claim)
        _run(config, context, plan, stop)
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        raise DiskFullError(_disk_full(error, folder)) from error
    finally:
        stop.on_abort = None  # the handlers stay to the end of the process (ancre.cli)
        if lock is not None:
            lock.release()
            remove_empty_folders(created)  # a run that failed before writing anything
    return folder.root


def _run(
    config: AncreConfig, context: DistributedContext, plan: RunPlan, stop: StopSignals
) -> None:
    """Everything after the claim: folder, tokenizer, model, engine, loop."""
    folder = plan.folder
    validation = None
    if (known := known_tokenizer(config, plan)) is not None:  # checked before any change
        validation = _validation(config, Tokenizer(known))
    on_main(context, lambda: prepare_folder(plan, config))
    on_main(context, lambda: run_tokenizer(config, plan))
    tokenizer = Tokenizer(folder.tokenizer_file)
    if validation is None:
        validation = _validation(config, tokenizer)
    torch.manual_seed(config.run.seed)
    with partitioned_construction(config):  # ZeRO-3: no process holds the whole model
        model = build_model(config, tokenizer.vocab_size, tokenizer.eos_id)
    model = apply_speedups(model, config.train)
    if config.model.init_from is not None and plan.resume_from is None:
        _init_weights(model, config.model.init_from)
    if context.is_main:
        tokens_per_step = config.train.global_batch_size * config.data.seq_len
        logger.info(
            "model: %d blocks, hidden %d, %.2fM parameters, topology %s; %.3g FLOPs per "
            "token; %d tokens per step (%d sequences of %d) over %d process(es); run folder %s",
            model.shape.num_layers, model.shape.hidden_size, model.num_parameters() / 1e6,
            config.topology.kind, flops_per_token(model, config.data.seq_len), tokens_per_step,
            config.train.global_batch_size, config.data.seq_len, context.world_size, folder.root,
        )  # fmt: skip
        if (device_key := local_device_key()) is not None:
            sized = size_plan(
                config, tokenizer.vocab_size, context.world_size, device_key, model
            )  # fmt: skip
            logger.info("%s", plan_summary(sized))
    pending = None if plan.checkpoint is None else Resumption.prepare(
        plan.checkpoint, model, config, context
    )  # fmt: skip
    engine = Engine(model, config, context, pending is not None and pending.route.load_universal)
    batches = TrainLoader(
        config.data, tokenizer, config.train.micro_batch_size, context.rank, context.world_size,
        config.run.seed,
    )  # fmt: skip
    state, resumed = (None, None) if pending is None else pending.restore(engine, batches, config)
    metrics = MetricsLogger(_metric_sinks(config, plan) if context.is_main else [])
    if resumed is not None:
        metrics.log(resumed)
    if pending is not None and state is not None:
        change = schedule_change(state.step, pending.checkpoint.config.train, config.train)
        if change is not None and context.is_main:
            logger.warning("resumed at step %d: %s", state.step, change)
            metrics.log({"step": state.step, "tokens": state.tokens, "schedule": change})
    tasks = TaskSchedule(config.eval, tokenizer) if config.eval.tasks is not None else None
    trainer = Trainer(
        config, folder, engine, batches, validation, tokenizer, metrics, state, stop, tasks
    )
    try:
        if trainer.state.step >= config.train.steps:
            logger.info("%s is complete (step %d); nothing to do", folder.root, trainer.state.step)
        else:
            trainer.fit()
        snapshot = engine.topology_snapshot(trainer.state.step, trainer.state.tokens, trainer.probe)
        if context.is_main and config.topology.kind != "cascaded":
            logger.info(
                "learned connection matrix (row j: the weights block j puts on h_0 = the "
                "embeddings .. h_j = its own input):"
            )
            logger.info("\n%s", matrix_table(snapshot.matrix))
        if context.is_main:
            logger.info("run folder: %s", folder.root)
    finally:
        metrics.close()
        engine.close()


def _disk_full(error: OSError, folder: RunFolder) -> str:
    """Says which write failed, and which checkpoint a resume will continue from."""
    complete = folder.latest_or_none()
    kept = (
        f"the last complete checkpoint, {complete}, is intact"
        if complete is not None
        else "the run has no complete checkpoint yet"
    )
    return (
        f"the disk holding {folder.root} is full: writing {error.filename or 'a file'} failed "
        f"({error.strerror}); {kept} (a checkpoint being written is ignored). Free space, or "
        "lower checkpoint.keep_last, and start the same command again to resume"
    )


def _validation(config: AncreConfig, tokenizer: Tokenizer) -> ValidationSet:
    """The validation set, after checking the model's vocabulary against the tokenizer's."""
    resolve_shape(config.model, tokenizer.vocab_size, config.data.seq_len)
    logger.info(
        "reading the validation set (%d tokens of the validation split%s)",
        config.eval.tokens,
        " of each source" if config.data.is_mixture else "",
    )
    return validation_set(config.data, tokenizer, config.eval.tokens)


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
    checkpoint = CheckpointFolder(folder).verify()
    config = load_config(checkpoint.folder.config_file, overrides)
    _setup_logging(launcher_rank() == 0)
    context = init_distributed(config.train.dist_timeout_s)
    _setup_logging(context.is_main)
    apply_cpu_threads(config.train.cpu_threads, context.device)
    tokenizer = Tokenizer(checkpoint.folder.tokenizer_file)
    torch.manual_seed(config.run.seed)
    with partitioned_construction(config):
        model = build_model(config, tokenizer.vocab_size, tokenizer.eos_id)
    engine = Engine(model, config, context)
    try:
        engine.load(checkpoint.folder.engine, weights_only=True)
        engine.freeze_topology(config.topology, checkpoint.step)
        val = validation_set(config.data, tokenizer, config.eval.tokens)
        result = evaluate_set(engine, val, config.eval.micro_batch_size)
    finally:
        engine.close()
    return {"step": checkpoint.step, **result} if context.is_main else None


def _setup_logging(is_main: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
