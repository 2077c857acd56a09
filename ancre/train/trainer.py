"""The training loop: batch -> forward/backward -> step -> metrics -> eval/snapshot/checkpoint."""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from ancre.checkpoint import (
    TrainerState,
    checkpoint_folder,
    publish_checkpoint,
    verify_checkpoint,
    write_data_state,
)
from ancre.config import AncreConfig, check_world_size, config_dict, load_config, save_config
from ancre.data.loader import TrainLoader, validation_set
from ancre.data.sources import SKIP_REASONS, check_data, split_texts
from ancre.data.tokenizer import Tokenizer, train_tokenizer
from ancre.model import IGNORE_INDEX, build_model
from ancre.snapshot import write_snapshot
from ancre.train.engine import DistributedContext, Engine, barrier, init_distributed
from ancre.train.metrics import JsonlSink, MetricsLogger, MetricsSink, WandbSink
from ancre.train.schedule import warmup_cosine

logger = logging.getLogger("ancre")


def run_folder(config: AncreConfig) -> Path:
    """The folder of a run: ``<run.out_dir>/<run.name>``."""
    return Path(config.run.out_dir) / config.run.name


def prepare_run_folder(run_dir: Path, overwrite: bool, is_main: bool) -> None:
    """Makes an empty run folder, refusing to mix two runs in one.

    Args:
        run_dir: The run folder.
        overwrite: Delete what an earlier run left there.
        is_main: Only the main process deletes and creates; every process checks.

    Raises:
        FileExistsError: The folder holds an earlier run and overwrite is off.
    """
    if (run_dir / "metrics.jsonl").exists() and not overwrite:
        raise FileExistsError(
            f"{run_dir} already holds a run; set run.overwrite=true to start over there, "
            "or choose another run.name"
        )
    if is_main:
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        (run_dir / "topology").mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints").mkdir(exist_ok=True)


def load_tokenizer(config: AncreConfig, run_dir: Path, context: DistributedContext) -> Tokenizer:
    """The run's tokenizer: ``data.tokenizer``, or one the main process trains on the data."""
    if config.data.tokenizer is not None:
        return Tokenizer(config.data.tokenizer)
    path = run_dir / "tokenizer.model"
    if context.is_main and not path.exists():
        documents = split_texts(config.data, "train", Counter())
        train_tokenizer(
            documents, path, config.data.tokenizer_vocab_size, config.data.tokenizer_model
        )
    barrier()
    return Tokenizer(path)


def evaluate(
    engine: Engine, inputs: torch.Tensor, targets: torch.Tensor, micro_batch_size: int
) -> dict[str, float]:
    """Token-weighted validation loss over all processes.

    Every process evaluates every W-th sequence; all run the same number of forward
    passes (padding with fully ignored rows), which ZeRO-3 needs.

    Args:
        engine: The engine holding the model.
        inputs: Validation inputs (N, T), identical on every process.
        targets: Validation targets (N, T); IGNORE_INDEX positions do not count.
        micro_batch_size: Rows per forward pass.

    Returns:
        ``val_loss`` (mean cross-entropy per target token), ``val_ppl`` and ``val_tokens``.
    """
    rank, world = engine.context.rank, engine.context.world_size
    own_inputs, own_targets = inputs[rank::world], targets[rank::world]  # (n, T) each
    num_batches = math.ceil(math.ceil(inputs.shape[0] / world) / micro_batch_size)
    padding = num_batches * micro_batch_size - own_inputs.shape[0]
    if padding:
        filler = inputs[:1].expand(padding, -1)  # (padding, T)
        own_inputs = torch.cat([own_inputs, filler])
        own_targets = torch.cat([own_targets, torch.full_like(filler, IGNORE_INDEX)])
    loss_sum = 0.0
    for b in range(num_batches):
        rows = slice(b * micro_batch_size, (b + 1) * micro_batch_size)
        loss_sum += engine.loss_sum(own_inputs[rows], own_targets[rows])
    count = float((own_targets != IGNORE_INDEX).sum())
    total, tokens = engine.all_reduce_sum([loss_sum, count])
    return {"val_loss": total / tokens, "val_ppl": math.exp(total / tokens), "val_tokens": tokens}


class Trainer:
    """Owns the loop of one run: steps, logging, evaluation, snapshots, checkpoints."""

    def __init__(
        self,
        config: AncreConfig,
        run_dir: Path,
        engine: Engine,
        batches: TrainLoader,
        validation: tuple[torch.Tensor, torch.Tensor],
        tokenizer: Tokenizer,
        metrics: MetricsLogger,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.engine = engine
        self.batches = batches
        self.validation = validation
        self.tokenizer = tokenizer
        self.metrics = metrics
        self.accumulation = check_world_size(config, engine.context.world_size)
        self.tokens_per_step = config.train.global_batch_size * config.data.seq_len
        self.step = 0

    @property
    def tokens(self) -> int:
        """Training tokens consumed so far over all processes."""
        return self.step * self.tokens_per_step

    def fit(self) -> dict[str, float]:
        """Trains for ``train.steps`` steps; returns the final evaluation."""
        config = self.config
        train = config.train
        self._log(self.evaluate())
        self.snapshot()
        loss_sum, steps_since_log, since = 0.0, 0, time.perf_counter()
        while self.step < train.steps:
            loss_sum += self._train_step()
            steps_since_log += 1
            self.step += 1
            if self.step % train.log_every == 0 or self.step == train.steps:
                elapsed = time.perf_counter() - since
                self._log_train(loss_sum, steps_since_log, elapsed)
                loss_sum, steps_since_log, since = 0.0, 0, time.perf_counter()
            if config.eval.every and self.step % config.eval.every == 0:
                self._log(self.evaluate())
            topology_every = config.checkpoint.topology_every
            if topology_every and self.step % topology_every == 0:
                self.snapshot()
            if config.checkpoint.every and self.step % config.checkpoint.every == 0:
                self.save_checkpoint()
        final = self.evaluate()
        if not (config.eval.every and self.step % config.eval.every == 0):
            self._log(final)
        self.snapshot()
        if not (config.checkpoint.every and self.step % config.checkpoint.every == 0):
            self.save_checkpoint()
        return final

    def _train_step(self) -> float:
        """One optimiser step over ``accumulation`` micro-batches; returns the mean loss."""
        lr_factor = warmup_cosine(
            self.step, self.config.train.steps, self.config.train.warmup_steps,
            self.config.train.min_lr_ratio,
        )  # fmt: skip
        total = torch.zeros(())
        for _ in range(self.accumulation):
            inputs, targets = next(self.batches)  # (B, T) each
            total += self.engine.forward_backward(inputs, targets).float().cpu()
            self.engine.step(lr_factor)
        return float(total) / self.accumulation

    def _log_train(self, loss_sum: float, steps: int, elapsed: float) -> None:
        skipped_here = self.batches.skipped()
        values = [loss_sum / steps] + [float(skipped_here[r]) for r in SKIP_REASONS]
        summed = self.engine.all_reduce_sum(values)
        record: dict[str, Any] = {
            "step": self.step,
            "tokens": self.tokens,
            "loss": summed[0] / self.engine.context.world_size,
            "lr": self.engine.lr,
            "grad_norm": self.engine.grad_norm(),
            "tokens_per_s": steps * self.tokens_per_step / elapsed,
        }
        skipped = {r: int(n) for r, n in zip(SKIP_REASONS, summed[1:], strict=True) if n}
        if skipped:
            record["data_skipped"] = skipped
        self._log(record)

    def _log(self, record: dict[str, Any]) -> None:
        record = {"step": self.step, "tokens": self.tokens, **record}
        if not self.engine.context.is_main:
            return
        self.metrics.log(record)
        if "val_loss" in record:
            logger.info(
                "step %d | val_loss %.4f | val_ppl %.2f",
                record["step"], record["val_loss"], record["val_ppl"],
            )  # fmt: skip
        else:
            logger.info(
                "step %d/%d | loss %.4f | lr %.2e | %.0f tok/s",
                record["step"], self.config.train.steps, record["loss"], record["lr"],
                record["tokens_per_s"],
            )  # fmt: skip

    def evaluate(self) -> dict[str, float]:
        """Validation loss of the current weights (collective)."""
        return evaluate(self.engine, *self.validation, self.config.eval.micro_batch_size)

    def snapshot(self) -> None:
        """Writes topology/step_XXXXXXXX.json (collective under ZeRO-3)."""
        snapshot = self.engine.topology_snapshot(self.step, self.tokens)
        if self.engine.context.is_main:
            write_snapshot(snapshot, self.run_dir / "topology" / f"step_{self.step:08d}.json")

    def save_checkpoint(self) -> Path:
        """Writes a complete checkpoint and points ``latest`` at it (collective)."""
        folder = checkpoint_folder(self.run_dir, self.step)
        started = time.perf_counter()
        self.engine.save(folder / "engine")
        write_data_state(folder, self.engine.context.rank, self.batches.state_dict())
        snapshot = self.engine.topology_snapshot(self.step, self.tokens)
        barrier()
        if self.engine.context.is_main:
            state = TrainerState(self.step, self.tokens, self.engine.context.world_size)
            publish_checkpoint(folder, state, self.config, snapshot, self.tokenizer.path)
            logger.info("checkpoint %s (%.1f s)", folder, time.perf_counter() - started)
        barrier()
        return folder


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
    """Runs a whole training run and returns its folder.

    Args:
        config: A validated config.

    Returns:
        The run folder.
    """
    check_data(config.data)
    context = init_distributed()
    _setup_logging(context)
    accumulation = check_world_size(config, context.world_size)
    run_dir = run_folder(config)
    prepare_run_folder(run_dir, config.run.overwrite, context.is_main)
    barrier()
    if context.is_main:
        save_config(config, run_dir / "config.yaml")
    tokenizer = load_tokenizer(config, run_dir, context)
    torch.manual_seed(config.run.seed)
    model = build_model(config, tokenizer.vocab_size)
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
    val = validation_set(config.data, tokenizer, config.eval.tokens)
    metrics = MetricsLogger(_metric_sinks(config, run_dir) if context.is_main else [])
    trainer = Trainer(config, run_dir, engine, batches, val, tokenizer, metrics)
    try:
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


def _setup_logging(context: DistributedContext) -> None:
    logging.basicConfig(
        level=logging.INFO if context.is_main else logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )


def evaluate_checkpoint(folder: Path, overrides: list[str]) -> dict[str, float] | None:
    """Loads a checkpoint through DeepSpeed and evaluates it on the validation set.

    Args:
        folder: A checkpoint folder (``<run>/checkpoints/step_XXXXXXXX``).
        overrides: Dotlist overrides of the checkpoint's config (e.g. ``eval.tokens=4096``).

    Returns:
        On the main process, the checkpoint's step and its ``val_loss``, ``val_ppl`` and
        ``val_tokens``; None on the others.
    """
    manifest = verify_checkpoint(folder)
    config = load_config(folder / "config.yaml", overrides)
    context = init_distributed()
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
