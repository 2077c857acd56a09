"""The training loop: batch -> forward/backward -> step -> metrics -> eval/snapshot/checkpoint.

Host syncs per optimiser step (the GPU runs ahead of the host otherwise): the loss is
summed on the device and read once per logged step. Two syncs remain, at the same
point after the update: the non-finite check (DeepSpeed's overflow test under ZeRO,
the gradient norm without it: the decision to skip a step is the host's), and the
one-number all-reduce that lets every process agree on a stop signal.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ancre.checkpoint import TrainerState
from ancre.config import AncreConfig
from ancre.data.loader import TrainLoader
from ancre.data.sources import SKIP_REASONS
from ancre.data.tokenizer import Tokenizer
from ancre.data.validation import ValidationSet
from ancre.model.topology.effective import PROBE_SEQUENCES
from ancre.run_folder import RunFolder
from ancre.snapshot import write_snapshot
from ancre.tasks.in_training import TaskSchedule
from ancre.train.checkpointer import Checkpointer
from ancre.train.engine import Engine, barrier, broadcast_from_main
from ancre.train.evaluation import evaluate_set
from ancre.train.flops import device_peak_flops, flops_per_token, mfu
from ancre.train.metrics import MetricsLogger
from ancre.train.preemption import StopRequested, StopSignals
from ancre.train.profiling import StepProfiler
from ancre.train.schedule import lr_factor

logger = logging.getLogger("ancre")


class NonFiniteLossError(RuntimeError):
    """Too many optimiser steps in a row were skipped for a non-finite loss."""


class Trainer:
    """Owns the loop of one run: steps, logging, evaluation, snapshots, checkpoints.

    Everything the loop carries from step to step is in :class:`TrainerState`, saved
    with every checkpoint, so a run resumed from one continues exactly.
    """

    def __init__(
        self,
        config: AncreConfig,
        folder: RunFolder,
        engine: Engine,
        batches: TrainLoader,
        validation: ValidationSet | tuple[torch.Tensor, torch.Tensor],
        tokenizer: Tokenizer,
        metrics: MetricsLogger,
        state: TrainerState | None = None,
        stop: StopSignals | None = None,
        tasks: TaskSchedule | None = None,
    ) -> None:
        self.config = config
        self.tasks = tasks
        self.folder = folder
        self.stop = stop
        self.engine = engine
        self.batches = batches
        self.validation = (
            validation if isinstance(validation, ValidationSet) else ValidationSet(*validation)
        )
        self.probe = self.validation.inputs[:PROBE_SEQUENCES]  # dynamic wirings average over it
        self.tokenizer = tokenizer
        self.checkpointer = Checkpointer(engine, folder, config, tokenizer.path, self.probe)
        self.profiler = StepProfiler(config.train.profile, folder.profile_dir, engine.context.rank)
        self.metrics = metrics
        self.state = state or TrainerState(0, 0, engine.context.world_size)
        self.state.world_size = engine.context.world_size  # a resume may change it
        self.tokens_per_step = config.train.global_batch_size * config.data.seq_len
        self.flops_per_token = flops_per_token(engine.model, config.data.seq_len)
        self.peak_flops = device_peak_flops(config.train.peak_flops)
        self._checkpointed_step = self.state.step if self.state.step else -1
        self._grad_norm: float | torch.Tensor | None = None
        self._began = (time.perf_counter(), self.state.step)  # (time, step) training began here
        self._freeze_if_due()  # a run resumed after topology.freeze_at

    def _due(self, every: int) -> bool:
        """Whether something done every ``every`` steps (0: never) falls on this step."""
        return every > 0 and self.state.step % every == 0

    def fit(self) -> None:
        """Trains from the current step up to ``train.steps``.

        Raises:
            NonFiniteLossError: ``train.max_bad_steps`` steps in a row were skipped.
            StopRequested: A stop signal came; the run stopped at a step boundary after
                writing a checkpoint.
        """
        steps, checkpoint = self.config.train.steps, self.config.checkpoint
        state = self.state
        self._began = (time.perf_counter(), state.step)
        stats_every = self.config.train.block_stats_every
        if state.step == 0:
            self._log(self.evaluate())
            self.snapshot()
            self._log_block_stats(stats_every)
        try:
            self._steps(steps, stats_every)
        finally:
            self.profiler.close()
        # the end of the run has its evaluation, snapshot and checkpoint, once
        if not self._due(self.config.eval.every):
            self._log(self.evaluate())
        if self.tasks is not None and not self.tasks.due(state.step):
            self.run_tasks()
        if not self._due(checkpoint.topology_every):
            self.snapshot()
        if not self._due(stats_every):
            self._log_block_stats(stats_every)
        if not self._due(checkpoint.every):
            self.save_checkpoint()

    def _steps(self, steps: int, stats_every: int) -> None:
        """The steps of :meth:`fit`, each followed by what falls due after it."""
        state, checkpoint = self.state, self.config.checkpoint
        timed_steps, since = 0, time.perf_counter()
        while state.step < steps:
            self.profiler.before_step(state.step + 1)
            self._train_step()
            self.profiler.after_step(state.step)
            self._freeze_if_due()
            timed_steps += 1
            if self._due(self.config.train.log_every) or state.step == steps:
                self._log_train(timed_steps, time.perf_counter() - since)
                timed_steps, since = 0, time.perf_counter()
            if self._due(self.config.eval.every):
                self._log(self.evaluate())
            if self.tasks is not None and self.tasks.due(state.step):
                self.run_tasks()
            if self._due(checkpoint.topology_every):
                self.snapshot()
            if self._due(stats_every):
                self._log_block_stats(stats_every)
            if self._due(checkpoint.every):
                self.save_checkpoint()
            if state.step < steps and self._stop_agreed():
                self._stop_here()  # (after the last step the run just finishes)

    def _log_block_stats(self, every: int) -> None:
        """Writes the per-block statistics of the probe batch (collective; 0: never)."""
        if every:
            self._log({"block_stats": self.engine.block_stats(self.probe).to_dict()})

    def _freeze_if_due(self) -> None:
        """Freezes the learned matrix at ``topology.freeze_at`` (and after it, on resume)."""
        wiring = self.engine.freeze_topology(self.config.topology, self.state.step)
        if wiring is not None:
            topology = self.config.topology
            logger.info(
                "topology frozen at step %d (topology.prune=%s): %d of %d connections kept",
                topology.freeze_at, topology.prune, wiring.num_edges,
                len(wiring.edges) * (len(wiring.edges) + 1) // 2,
            )  # fmt: skip

    def _stop_agreed(self) -> bool:
        """Whether any process received a stop signal (collective: every process asks)."""
        return self.stop is not None and self.engine.any_process(self.stop.requested)

    def _stop_here(self) -> None:
        """Writes a checkpoint at this step (unless one exists) and stops the run."""
        if self._checkpointed_step != self.state.step:
            self.save_checkpoint()
        latest = self.folder.latest_or_none() if self.engine.context.is_main else None
        complete = broadcast_from_main(latest)  # the main process publishes checkpoints
        assert self.stop is not None
        raise StopRequested(self.stop.signal_name, self.state.step, complete, self.stop.received_at)

    def _train_step(self) -> None:
        """Next micro-batches -> one optimiser step -> bookkeeping."""
        train, state = self.config.train, self.state
        watch = bool(train.spike_factor)
        full = len(state.loss_window) >= train.spike_window
        threshold = train.spike_factor * statistics.median(state.loss_window) if full else None
        result = self.engine.train_step(
            self.batches, lr_factor(state.step, train), watch, threshold if watch else None
        )  # fmt: skip
        state.step += 1
        state.tokens += self.tokens_per_step
        self._grad_norm = result.grad_norm
        if result.applied:
            state.bad_steps = 0
            state.log_loss_sum = state.log_loss_sum + result.loss  # on the device: no sync
            if result.z_loss is not None:
                state.log_z_sum = state.log_z_sum + result.z_loss
            state.log_steps += 1
            if result.global_loss is not None:
                state.loss_window = [*state.loss_window, result.global_loss][-train.spike_window :]
            return
        state.bad_steps += 1
        if result.spiked:
            state.spiked_steps += 1
            logger.warning(
                "step %d skipped: loss %.4f is above train.spike_factor=%g x the median %.4f of "
                "the last %d steps (%d in a row, train.max_bad_steps=%d)", state.step,
                result.global_loss, train.spike_factor, threshold / train.spike_factor,
                len(state.loss_window), state.bad_steps, train.max_bad_steps,
            )  # fmt: skip
            spike = {"loss": result.global_loss, "threshold": threshold}
            self._log({"spike": spike, "spiked_steps": state.spiked_steps})
        else:
            state.skipped_steps += 1
            logger.warning(
                "step %d skipped: non-finite loss or gradients (%d in a row, "
                "train.max_bad_steps=%d)", state.step, state.bad_steps, train.max_bad_steps,
            )  # fmt: skip
        if state.bad_steps >= train.max_bad_steps:
            complete = self.folder.latest_or_none()
            where = (
                f"the last complete checkpoint, {complete}, is intact. Resume from it with a "
                "lower train.lr or train.grad_clip, or look for corrupt data"
                if complete is not None
                else "no checkpoint was written before; start over with a lower train.lr or "
                "train.grad_clip (run.overwrite=true), or look for corrupt data"
            )
            raise NonFiniteLossError(
                f"{state.bad_steps} steps in a row (up to step {state.step}) had a non-finite "
                f"loss or gradients, or a loss spike, so the run stopped; {where}"
            )

    def _log_train(self, timed_steps: int, elapsed: float) -> None:
        skipped_here = self.batches.skipped()
        state = self.state
        steps = state.log_steps
        mean = float(state.log_loss_sum) / steps if steps else math.nan
        z_mean = float(state.log_z_sum) / steps if steps else math.nan
        values = [mean, z_mean] + [float(skipped_here[r]) for r in SKIP_REASONS]
        summed = self.engine.all_reduce_sum(values)
        tokens_per_s = timed_steps * self.tokens_per_step / elapsed
        world = self.engine.context.world_size
        record: dict[str, Any] = {
            "loss": summed[0] / world,
            "lr": self.engine.lr,
            "grad_norm": None if self._grad_norm is None else float(self._grad_norm),
            "tokens_per_s": tokens_per_s,
        }
        if self.config.train.z_loss:
            record["z_loss"] = summed[1] / world
        utilisation = mfu(
            tokens_per_s, self.flops_per_token, self.peak_flops, self.engine.context.world_size
        )
        if utilisation is not None:
            record["mfu"] = utilisation
        skipped = {r: int(n) for r, n in zip(SKIP_REASONS, summed[2:], strict=True) if n}
        if skipped:
            record["data_skipped"] = skipped
        if state.skipped_steps:
            record["skipped_steps"] = state.skipped_steps
        if state.spiked_steps:
            record["spiked_steps"] = state.spiked_steps
        state.log_loss_sum, state.log_z_sum, state.log_steps = 0.0, 0.0, 0
        self._log(record)

    def _log(self, record: dict[str, Any]) -> None:
        record = {"step": self.state.step, "tokens": self.state.tokens, **record}
        if not self.engine.context.is_main:
            return
        self.metrics.log(record)
        if "val_loss" in record:
            logger.info(
                "step %d | val_loss %.4f | val_ppl %.2f",
                record["step"], record["val_loss"], record["val_ppl"],
            )  # fmt: skip
        elif "block_stats" in record:
            rms = record["block_stats"]["state_rms"]
            logger.debug("step %d | RMS of the final state %.4g", record["step"], rms[-1])
        elif "spike" in record:
            return  # said as a warning when it fired
        elif "loss" not in record:  # downstream task values
            values = [(k, v) for k, v in record.items() if k.startswith("task/")]
            logger.info("step %d | %s", record["step"], ", ".join(f"{k} {v}" for k, v in values))
        else:
            mfu_text = f" | MFU {record['mfu']:.1%}" if "mfu" in record else ""
            logger.info(
                "step %d/%d | loss %.4f | lr %.2e | %.0f tok/s%s | %s",
                record["step"], self.config.train.steps, record["loss"], record["lr"],
                record["tokens_per_s"], mfu_text, self._progress(),
            )  # fmt: skip

    def _progress(self) -> str:
        """``elapsed 0:01:02, ETA 0:03:10``: time since this process began training.

        The ETA is what the steps left take at the pace so far.
        """
        elapsed = time.perf_counter() - self._began[0]
        done = self.state.step - self._began[1]
        left = self.config.train.steps - self.state.step
        eta = elapsed / done * left if done > 0 else math.nan
        return f"elapsed {_clock(elapsed)}, ETA {_clock(eta)}"

    def evaluate(self) -> dict[str, float]:
        """Validation loss of the current weights (collective)."""
        return evaluate_set(self.engine, self.validation, self.config.eval.micro_batch_size)

    def run_tasks(self) -> None:
        """eval.tasks on the main process's weights; the others wait (collective)."""
        assert self.tasks is not None
        if self.engine.context.is_main:
            self._log(self.tasks.run(self.engine.model))
        barrier()

    def snapshot(self) -> None:
        """Writes topology/step_XXXXXXXX.json (collective under ZeRO-3)."""
        step = self.state.step
        snapshot = self.engine.topology_snapshot(step, self.state.tokens, self.probe)
        if self.engine.context.is_main:
            write_snapshot(snapshot, self.folder.snapshot_path(step))
            self.metrics.log_topology(snapshot)

    def save_checkpoint(self) -> Path | None:
        """Writes a complete checkpoint (:meth:`Checkpointer.save`; collective)."""
        folder = self.checkpointer.save(self.state, self.batches)
        self._checkpointed_step = self.state.step
        return folder


def _clock(seconds: float) -> str:
    """``H:MM:SS`` (``?`` while unknown)."""
    if not math.isfinite(seconds):
        return "?"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
