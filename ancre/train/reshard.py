"""Resuming on another number of processes, ZeRO stage, micro-batch or number of readers.

A checkpoint holds DeepSpeed's state split over the processes that wrote it, and the
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

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ancre.checkpoint import read_manifest, read_rank_state, universal_path
from ancre.config import AncreConfig, check_world_size, load_config
from ancre.data.loader import TrainLoader
from ancre.data.regroup import regroup_loader_states
from ancre.model import Transformer
from ancre.train.engine import Engine
from ancre.train.rng import set_rng_state
from ancre.train.universal import make_universal, read_universal

logger = logging.getLogger("ancre")


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


def resume_route(checkpoint: Path, config: AncreConfig, world_size: int) -> ResumeRoute:
    """The route from a (verified) checkpoint to a run of ``world_size`` processes."""
    manifest = read_manifest(checkpoint)
    return ResumeRoute(
        (manifest["world_size"], world_size), (manifest["zero_stage"], config.train.zero_stage)
    )


def prepare_universal(
    checkpoint: Path, route: ResumeRoute, model: Transformer, config: AncreConfig
) -> dict[str, Any] | None:
    """Makes the checkpoint's universal form when the route needs it (main process).

    Returns:
        Its marker (seconds taken, bytes), or None when the route needs none.
    """
    if not route.universal:
        return None
    made = (universal_path(checkpoint) / "zero").is_dir()
    marker = make_universal(checkpoint, route.zero_stage[0], model, config)
    logger.info(
        "%s the universal form of %s (%s): %.1f s, %.1f MB",
        "using" if made else "made", checkpoint, route.describe(), marker["seconds"],
        marker["bytes"] / 1e6,
    )  # fmt: skip
    return marker


def restore(
    engine: Engine,
    batches: TrainLoader,
    checkpoint: Path,
    config: AncreConfig,
    route: ResumeRoute,
    marker: dict[str, Any] | None,
    step: int,
    tokens: int,
) -> dict[str, Any] | None:
    """Loads the weights, Adam state, data positions and random states (every process).

    Args:
        engine: The engine, built with ``load_universal=route.load_universal``.
        batches: This rank's loader.
        checkpoint: The checkpoint folder.
        config: The resumed run's config.
        route: From :func:`resume_route`.
        marker: What :func:`prepare_universal` returned on the main process.
        step: The checkpoint's step.
        tokens: Its training tokens.

    Returns:
        The ``metrics.jsonl`` record of what changed since the checkpoint (processes, ZeRO
        stage, batch sizes, readers, and what the data move did), or None when nothing did.
    """
    if not route.universal:
        engine.load(checkpoint / "engine")
    elif route.load_universal:
        engine.load_universal(universal_path(checkpoint))
    else:
        names = [n for n, p in engine.model.named_parameters() if p.requires_grad]
        tensors, adam_step = read_universal(checkpoint, names)
        engine.load_whole(tensors, adam_step)
    before = load_config(checkpoint / "config.yaml")
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
    data = _restore_data(batches, engine.context.rank, checkpoint, before, config, route)
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
    return {"step": step, "tokens": tokens, "resumed": changes}


def _restore_data(
    batches: TrainLoader,
    rank: int,
    checkpoint: Path,
    before: AncreConfig,
    config: AncreConfig,
    route: ResumeRoute,
) -> dict[str, Any] | None:
    """Sets this rank's data position and random states; describes a move of readers."""
    old_world, world = route.processes
    if old_world == world and before.data.num_workers == config.data.num_workers:
        saved = read_rank_state(checkpoint, rank)
        batches.load_state_dict(saved["data"])
        set_rng_state(saved["rng"])
        return None
    saved_states = [read_rank_state(checkpoint, r) for r in range(old_world)]
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
