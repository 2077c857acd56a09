"""Checkpoints in the run: writing one (:class:`Checkpointer`), resuming from one (:class:`Resumption`).

A checkpoint is written by every process (its engine partition and its data position
and random states), completed by the main process (topology, config, tokenizer,
trainer state, manifest last), published (``latest``) and pruned; a failed write on any
process fails it on all, and ``latest`` still names the previous complete checkpoint.

A resume may change the number of processes, the ZeRO stage, the micro-batch or the
number of readers. A checkpoint holds DeepSpeed's state split over the processes that wrote it, and the
data position of each reader. A run that splits its state the same way (same processes,
same ZeRO stage) loads them as they are. Otherwise the weights and Adam state come back
by one of these routes (docs/checkpoint-format.md):

| checkpoint -> run | route |
|---|---|
| ZeRO 0 -> ZeRO 0 | DeepSpeed's own load: every process saved, and reads, whole tensors |
| ZeRO 0-3 -> ZeRO 1-3 | the universal form (``ancre.train.universal``), partitioned for the new world by DeepSpeed's universal loader |
| ZeRO 1-3 -> ZeRO 0 | the universal form's whole tensors, copied into the model and optimiser |

Either way the fp32 master weights, both Adam moments and Adam's step are copied, never
recomputed, so they come back exactly; the topology logits are fp32 master weights like
all others. The step and the learning-rate schedule continue from the trainer state.

The data positions move to the new readers (processes x ``data.num_workers``) with the
guarantee of ``ancre.data.regroup``: nothing read twice, nothing skipped. New rank r
takes the random states of old rank r mod N.
"""  # noqa: E501

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ancre.checkpoint import CheckpointFolder, TrainerState, VerifiedCheckpoint
from ancre.config import AncreConfig, check_world_size
from ancre.data.loader import TrainLoader
from ancre.data.regroup import regroup_loader_states
from ancre.model import Transformer
from ancre.run_folder import RunFolder, prune
from ancre.train.engine import DistributedContext, Engine, barrier
from ancre.train.prepare import on_main
from ancre.train.rng import rng_state, set_rng_state
from ancre.train.universal import make_universal, read_universal
from ancre.train.write_failures import write_error

logger = logging.getLogger("ancre")


class Checkpointer:
    """Writes a run's checkpoints: every process its part, the main process the rest.

    Args:
        engine: The engine (its state, its collectives).
        folder: The run folder (where checkpoints go, ``latest``, pruning).
        config: The run config (saved in each checkpoint; ``checkpoint.keep_last``).
        tokenizer: The run's tokenizer file (copied into each checkpoint).
        probe: The batch a dynamic wiring's snapshot is averaged over.
    """

    def __init__(
        self,
        engine: Engine,
        folder: RunFolder,
        config: AncreConfig,
        tokenizer: Path,
        probe: torch.Tensor,
    ) -> None:
        self.engine, self.folder, self.config = engine, folder, config
        self.tokenizer, self.probe = tokenizer, probe

    def save(self, state: TrainerState, batches: TrainLoader) -> Path | None:
        """Writes a complete checkpoint, points ``latest`` at it and prunes (collective).

        Skipped while steps are being skipped for non-finite losses, so that a good
        checkpoint is never pruned in favour of a suspect one.

        Args:
            state: The trainer's position.
            batches: This rank's loader (its position is saved).

        Returns:
            The checkpoint folder, or None when none was written.

        Raises:
            OSError: A process could not write its part (the first error is raised on
                that process; the others raise one that names it).
        """
        step = state.step
        if state.bad_steps:
            logger.warning("no checkpoint at step %d: its last step was skipped", step)
            return None
        folder = CheckpointFolder(self.folder.checkpoint_folder(step))
        started = time.perf_counter()
        snapshot = self.engine.topology_snapshot(step, state.tokens, self.probe)
        error: OSError | None = None
        try:
            self.engine.save(folder.engine)
            folder.write_rank_state(self.engine.context.rank, batches.state_dict(), rng_state())
        except OSError as caught:
            error = caught
        except RuntimeError as caught:  # torch.save reports a failed write as a RuntimeError
            if (error := write_error(caught, folder.path)) is None:
                raise
        self._raise_if_any_failed(error, folder.path)
        if self.engine.context.is_main:
            try:
                folder.complete(state, self.config, snapshot, self.tokenizer)
            except OSError as caught:
                error = caught
        self._raise_if_any_failed(error, folder.path)
        if self.engine.context.is_main:
            self.folder.publish(folder.path)
            for old in prune(self.folder, self.config.checkpoint.keep_last):
                logger.info("deleted %s (checkpoint.keep_last)", old)
            logger.info("checkpoint %s (%.1f s)", folder.path, time.perf_counter() - started)
        barrier()
        return folder.path

    def _raise_if_any_failed(self, error: OSError | None, folder: Path) -> None:
        """Raises on every process when writing failed on one of them (collective)."""
        if self.engine.any_process(error is not None):
            if error is not None:
                raise error
            raise OSError(f"another process could not write its part of {folder}")


@dataclass(frozen=True)
class ResumeRoute:
    """How a checkpoint's state reaches a resumed run.

    Attributes:
        processes: (the checkpoint's, the run's) number of processes.
        zero_stage: (the checkpoint's, the run's) ZeRO stage.
    """

    processes: tuple[int, int]
    zero_stage: tuple[int, int]

    @property
    def universal(self) -> bool:
        """The state goes through the checkpoint's universal form."""
        changed = self.processes[0] != self.processes[1] or self.zero_stage[0] != self.zero_stage[1]
        return changed and self.zero_stage != (0, 0)

    @property
    def load_universal(self) -> bool:
        """DeepSpeed's universal loader reads it (the run uses ZeRO 1-3)."""
        return self.universal and self.zero_stage[1] > 0

    def describe(self) -> str:
        """``2 process(es) at ZeRO 2 -> 1 at ZeRO 0``."""
        (n0, n1), (z0, z1) = self.processes, self.zero_stage
        return f"{n0} process(es) at ZeRO {z0} -> {n1} at ZeRO {z1}"


def resume_route(
    checkpoint: VerifiedCheckpoint, config: AncreConfig, world_size: int
) -> ResumeRoute:
    """The route from a verified checkpoint to a run of ``world_size`` processes."""
    return ResumeRoute(
        (checkpoint.world_size, world_size), (checkpoint.zero_stage, config.train.zero_stage)
    )


@dataclass(frozen=True)
class Resumption:
    """A resume under way: the route chosen and, when it needs it, the universal form made.

    Attributes:
        checkpoint: The verified checkpoint.
        route: How its state reaches this run.
        marker: What making the universal form took (main process; None without one).
    """

    checkpoint: VerifiedCheckpoint
    route: ResumeRoute
    marker: dict[str, Any] | None

    @classmethod
    def prepare(
        cls,
        checkpoint: VerifiedCheckpoint,
        model: Transformer,
        config: AncreConfig,
        context: DistributedContext,
    ) -> Resumption:
        """Chooses the route; the main process makes the universal form if it needs one.

        Called on every process, before the engine is built (whether it loads the
        universal form decides how it is built: ``route.load_universal``).
        """
        route = resume_route(checkpoint, config, context.world_size)
        marker = on_main(context, lambda: prepare_universal(checkpoint, route, model, config))
        return cls(checkpoint, route, marker)

    def restore(
        self, engine: Engine, batches: TrainLoader, config: AncreConfig
    ) -> tuple[TrainerState, dict[str, Any] | None]:
        """Loads everything into the engine and the loader (every process).

        Returns:
            The trainer state to continue from, and :func:`restore`'s record.
        """
        state = dataclasses.replace(self.checkpoint.state)  # the trainer moves its own copy
        record = restore(engine, batches, self.checkpoint, config, self.route, self.marker)
        return state, record


def prepare_universal(
    checkpoint: VerifiedCheckpoint, route: ResumeRoute, model: Transformer, config: AncreConfig
) -> dict[str, Any] | None:
    """Makes the checkpoint's universal form when the route needs it (main process).

    Returns:
        Its marker (seconds taken, bytes), or None when the route needs none.
    """
    if not route.universal:
        return None
    folder = checkpoint.folder
    marker, made = make_universal(folder, route.zero_stage[0], model, config)
    logger.info(
        "%s the universal form of %s (%s): %.1f s to make, %.1f MB",
        "made" if made else "verified", folder.path, route.describe(), marker["seconds"],
        marker["bytes"] / 1e6,
    )  # fmt: skip
    return {key: marker[key] for key in ("seconds", "bytes")}


def restore(
    engine: Engine,
    batches: TrainLoader,
    checkpoint: VerifiedCheckpoint,
    config: AncreConfig,
    route: ResumeRoute,
    marker: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Loads the weights, Adam state, data positions and random states (every process).

    Args:
        engine: The engine, built with ``load_universal=route.load_universal``.
        batches: This rank's loader.
        checkpoint: The verified checkpoint.
        config: The resumed run's config.
        route: From :func:`resume_route`.
        marker: What :func:`prepare_universal` returned on the main process.

    Returns:
        The ``metrics.jsonl`` record of what changed since the checkpoint (processes, ZeRO
        stage, batch sizes, readers, and what the data move did), or None when nothing did.
    """
    folder = checkpoint.folder
    if not route.universal:
        engine.load(folder.engine)
    elif route.load_universal:
        engine.load_universal(folder.universal)
    else:
        names = [n for n, p in engine.model.named_parameters() if p.requires_grad]
        tensors, adam_step = read_universal(folder, names)
        engine.load_whole(tensors, adam_step)
    before = checkpoint.config
    changes = {
        key: f"{old} -> {new}"
        for key, old, new in (
            ("processes", *route.processes),
            ("zero_stage", *route.zero_stage),
            ("micro_batch_size", before.train.micro_batch_size, config.train.micro_batch_size),
            ("global_batch_size", before.train.global_batch_size, config.train.global_batch_size),
            ("num_workers", before.data.num_workers, config.data.num_workers),
        )
        if old != new
    }
    data = _restore_data(batches, engine.context.rank, folder, before, config, route)
    if not changes:
        return None
    if route.universal:
        assert marker is not None
        changes["state"] = (
            f"universal form ({marker['seconds']:.2f} s, {marker['bytes']} bytes to make)"
        )
    else:
        changes["state"] = "DeepSpeed's own load"
    if data is not None:
        changes["data"] = data
    return {"step": checkpoint.step, "tokens": checkpoint.state.tokens, "resumed": changes}


def _restore_data(
    batches: TrainLoader,
    rank: int,
    checkpoint: CheckpointFolder,
    before: AncreConfig,
    config: AncreConfig,
    route: ResumeRoute,
) -> dict[str, Any] | None:
    """Sets this rank's data position and random states; describes a move of readers."""
    old_world, world = route.processes
    if old_world == world and before.data.num_workers == config.data.num_workers:
        saved = checkpoint.read_rank_state(rank)
        batches.load_state_dict(saved["data"])
        set_rng_state(saved["rng"])
        return None
    saved_states = [checkpoint.read_rank_state(r) for r in range(old_world)]
    states, report = regroup_loader_states(
        [s["data"] for s in saved_states], world, config.data.num_workers
    )
    batches.load_state_dict(states[rank])
    set_rng_state(saved_states[rank % old_world]["rng"])
    aligned = all(
        check_world_size(c, n) % max(1, c.data.num_workers) == 0
        for c, n in ((before, old_world), (config, world))
    )
    exact = report.readers_before == report.readers_after and aligned
    exact = exact and not report.rotation_reset
    record = {**report.as_record(), "exact": exact}
    if exact:
        logger.info(
            "data: %d readers before and after (processes x data.num_workers); each continues "
            "where it stopped, so the batches are an uninterrupted run's", report.readers_after,
        )  # fmt: skip
    else:
        handed = report.lines_handed_over
        logger.warning(
            "data: exact continuation is impossible with %d readers before and %d now "
            "(processes x data.num_workers): the new readers first read the old ones' "
            "unread lines below the furthest point any reached (%s lines handed over), then "
            "go on from there; %d read-but-untrained tokens carried over, %d documents "
            "skipped, none read twice. Batches differ from an uninterrupted run's from here",
            report.readers_before, report.readers_after,
            "?" if handed is None else handed, report.pending_tokens, report.documents_skipped,
        )  # fmt: skip
    return record
