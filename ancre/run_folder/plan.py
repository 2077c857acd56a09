"""Deciding what a run does with its folder, before anything on disk changes.

:func:`plan_run` reads the run folder and the checkpoint to resume from, checks them
against the config, and returns a :class:`RunPlan`; it writes nothing. Every refusal
is raised here, so a run that cannot go ahead has changed nothing.

``checkpoint.resume``:

- ``auto``: continue from the checkpoint ``latest`` names; without ``latest`` (lost,
  or deleted by hand), from the newest checkpoint that verifies, saying so; start from
  scratch only when the run has no complete checkpoint at all (what an attempt
  without one wrote is replaced). Complete checkpoints that all fail verification
  are refused: a run never starts over on its own where one was written.
- ``never``: start from scratch; a folder that holds a run is refused unless
  ``run.overwrite: true``.
- a checkpoint folder: continue from it. An older checkpoint of this run rewinds the
  run to it (newer complete checkpoints are set aside, not deleted); another run's
  checkpoint starts this run's folder from it, which must then be new or empty.

``run.overwrite: true`` starts over, deleting what an earlier run wrote, and only in a
folder that is recognisably an ancre run folder.

A resume may use another number of processes, ZeRO stage, micro-batch size or
``data.num_workers`` (``ancre.train.checkpointer`` moves the state); the global batch is
kept unless ``checkpoint.allow_batch_change: true``, because it changes the optimisation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ancre.checkpoint import CheckpointError, CheckpointFolder, VerifiedCheckpoint
from ancre.config import AncreConfig, flat_config
from ancre.config.resume import compare_configs
from ancre.run_folder.layout import RunFolder, RunFolderError
from ancre.run_folder.rewind import later_complete_checkpoints

EMPTY_AT_FIRST = ("topology", "checkpoints")
"""Folders a run may have made before its config.yaml, in an older layout."""


@dataclass(frozen=True)
class RunPlan:
    """What a run does with its folder.

    Attributes:
        folder: The run folder.
        checkpoint: The verified checkpoint to continue from (what its verification
            read: manifest, trainer state, config), or None to start.
        start_over: Delete what an earlier run wrote before starting.
        overwrite: Starting over deletes set-aside checkpoints too (``run.overwrite``).
        set_aside: Complete checkpoints newer than ``resume_from`` that move to
            ``superseded/``.
        recovered: Why ``resume_from`` is not the checkpoint ``latest`` names (it was
            missing), for the run to say; empty otherwise.
        changes: Settings that differ from the checkpoint's and may (``key: old -> new``).
        diverging: Those of ``changes`` that make the continuation differ from the run
            the checkpoint came from (learning rate, data, ...).
    """

    folder: RunFolder
    checkpoint: VerifiedCheckpoint | None = None
    start_over: bool = False
    overwrite: bool = False
    set_aside: tuple[Path, ...] = ()
    changes: tuple[str, ...] = ()
    diverging: tuple[str, ...] = ()
    recovered: str = ""

    @property
    def resume_from(self) -> Path | None:
        """The folder of the checkpoint to continue from, or None to start."""
        return None if self.checkpoint is None else self.checkpoint.path

    @property
    def step(self) -> int:
        """The checkpoint's step (0 when starting)."""
        return 0 if self.checkpoint is None else self.checkpoint.step


def plan_run(config: AncreConfig, world_size: int) -> RunPlan:
    """Decides whether a run starts, starts over or resumes, and from which checkpoint.

    Args:
        config: The validated config.
        world_size: Number of training processes.

    Returns:
        The plan.

    Raises:
        RunFolderError: The folder is not a place this run may write to as asked.
        CheckpointError: The checkpoint to resume from is incomplete, altered, garbage,
            holds another model, or was trained with another global batch.
    """
    folder = RunFolder.of(config)
    _check_location(folder, config)
    resume = config.checkpoint.resume
    if config.run.overwrite:
        _check_owned(folder, "run.overwrite=true deletes only what an ancre run wrote")
        return RunPlan(folder, start_over=bool(folder.entries()), overwrite=True)
    if resume == "never":
        if folder.entries():
            raise RunFolderError(
                f"{folder.root} already holds a run and checkpoint.resume=never; set "
                "run.overwrite=true to start over there, or choose another run.name"
            )
        return RunPlan(folder)
    if resume == "auto":
        _check_owned(folder, "a run writes only into a new, empty or ancre run folder")
        latest = folder.latest_verified()
        if latest is not None:
            return _resume_plan(folder, latest, config, world_size)
        newest, why = _newest_verified(folder)
        if newest is None:
            return RunPlan(folder, start_over=bool(folder.entries()))
        plan = _resume_plan(folder, newest, config, world_size)
        return replace(plan, recovered=why)
    checkpoint = CheckpointFolder(Path(resume)).verify()
    # this run's: under checkpoints/, or set aside under superseded/ by an earlier rewind
    own = folder.root.resolve() in checkpoint.path.resolve().parents
    if not own and folder.entries():
        raise RunFolderError(
            f"checkpoint.resume={resume} is another run's checkpoint, and it would continue "
            f"into {folder.root}, which is not empty; choose a new run.name"
        )
    return _resume_plan(folder, checkpoint, config, world_size)


def _newest_verified(folder: RunFolder) -> tuple[VerifiedCheckpoint | None, str]:
    """Without ``latest``: the newest complete checkpoint that verifies, and why it is used.

    Raises:
        RunFolderError: Complete checkpoints exist but none verifies (nothing is started
            over on its own).
    """
    complete = folder.with_manifest()
    failures = []
    for checkpoint in reversed(complete):
        try:
            verified = CheckpointFolder(checkpoint).verify()
        except CheckpointError as error:
            failures.append(f"{checkpoint.name}: {error}")
            continue
        skipped = f" ({len(failures)} newer did not verify)" if failures else ""
        return verified, (
            f"{folder.latest_file} is missing; resuming from the newest complete checkpoint "
            f"that verifies, {checkpoint.name}{skipped}"
        )
    if complete:
        raise RunFolderError(
            f"{folder.latest_file} is missing and none of the {len(complete)} complete "
            f"checkpoints of {folder.root} verifies ({'; '.join(failures[:3])}); nothing was "
            "changed. Resume from one explicitly with checkpoint.resume=PATH once it is "
            "repaired, or start over with run.overwrite=true (it deletes them)"
        )
    return None, ""


def _check_location(folder: RunFolder, config: AncreConfig) -> None:
    out_dir = Path(config.run.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunFolderError(f"run.out_dir={config.run.out_dir!r} is a file, not a folder")
    root, parent = folder.root.resolve(), out_dir.resolve()
    if root == parent or root in parent.parents or parent not in root.parents:
        raise RunFolderError(
            f"the run folder {folder.root} resolves to {root}, which is not inside "
            f"run.out_dir={config.run.out_dir!r} (a link?); choose another run.name"
        )
    if folder.root.exists() and not folder.root.is_dir():
        raise RunFolderError(f"{folder.root} is a file, not a run folder; choose another run.name")


def _check_owned(folder: RunFolder, rule: str) -> None:
    """Refuses a non-empty folder that is not recognisably an ancre run folder."""
    entries = folder.entries()
    if not entries or folder.is_run_folder():
        return
    if (what := folder.looks_like()) is not None:
        raise RunFolderError(
            f"{folder.root} is {what}, not a run folder: a run never writes into it; {rule}. "
            "Choose another run.name or run.out_dir (to start from a conversion's weights, "
            "model.init_from=FOLDER)"
        )
    if all(p.name in EMPTY_AT_FIRST and p.is_dir() and not any(p.iterdir()) for p in entries):
        return  # an earlier attempt that died before writing its config
    raise RunFolderError(
        f"{folder.root} is not empty and is not an ancre run folder (it has no readable "
        f"config.yaml; it holds {', '.join(p.name for p in entries[:5])}"
        f"{', ...' if len(entries) > 5 else ''}); {rule}. Choose another run.name or run.out_dir"
    )


def _resume_plan(
    folder: RunFolder, verified: VerifiedCheckpoint, config: AncreConfig, world_size: int
) -> RunPlan:
    checkpoint, manifest, saved = verified.path, verified.manifest, verified.config
    before = flat_config(saved)
    refused, changes, diverging = compare_configs(
        before, flat_config(config), config.checkpoint.allow_batch_change
    )
    readers = (
        manifest["world_size"] * max(1, saved.data.num_workers),
        world_size * max(1, config.data.num_workers),
    )
    if config.data.source == "hub" and readers[0] != readers[1]:
        refused.append(
            f"readers (processes x data.num_workers): {readers[0]} -> {readers[1]} (a hub "
            "stream's position cannot be split otherwise: keep the product, or use local shards)"
        )
    if config.data.is_mixture and readers[0] != readers[1]:
        refused.append(
            f"readers (processes x data.num_workers): {readers[0]} -> {readers[1]} (a "
            "mixture's positions cannot be split otherwise: keep the product)"
        )
    if refused:
        raise CheckpointError(
            f"{checkpoint} holds another model, batch or data split than this "
            f"config asks for: {'; '.join(refused)}. A resume continues the checkpoint as it "
            "is: put these keys back, or start a new run (another run.name); a new run can "
            f"start from these weights if the shape is kept: ancre convert {checkpoint} "
            "OUT_DIR, then model.init_from=OUT_DIR"
        )
    routes = (manifest["world_size"], world_size), (manifest["zero_stage"], config.train.zero_stage)
    resharded = routes[0][0] != routes[0][1] or routes[1][0] != routes[1][1]
    if saved.train.optimizer == "muon" and resharded and routes[1] != (0, 0):
        raise CheckpointError(
            f"{checkpoint} was trained with train.optimizer=muon on {routes[0][0]} "
            f"process(es) at ZeRO {routes[1][0]}; its state cannot move to {routes[0][1]} at "
            f"ZeRO {routes[1][1]}: only Adam-type moments are resharded (the universal form). "
            f"Resume on {routes[0][0]} process(es) at train.zero_stage={routes[1][0]}"
        )
    aside = later_complete_checkpoints(folder, verified.step)
    own = folder.root.resolve() in checkpoint.resolve().parents
    return RunPlan(
        folder, verified, set_aside=tuple(aside) if own else (),
        changes=tuple(changes), diverging=tuple(diverging),
    )  # fmt: skip
