"""Getting a run folder ready: every check first, then the lock, then the changes.

The order is the promise that a bad run changes nothing on disk:

1. :func:`check_inputs` (every process): the config's model and topology, the data
   folder, the tokenizer file and ``model.init_from``. Nothing is written.
2. :func:`claim_folder` (main process): the run folder's lock, then the plan
   (start, start over or resume, and from which checkpoint, ``ancre.run_folder.plan``),
   then whether the saved data positions fit the shards there are now. A refusal
   releases the lock and removes the folders the claim created.
3. :func:`prepare_folder` (main process): only now is anything deleted, moved or
   rewritten, as the plan says.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import torch

from ancre.atomic import write_bytes_atomic, write_text_atomic
from ancre.config import AncreConfig, ConfigError, DataConfig, config_yaml
from ancre.config.hf_source import hf_folder
from ancre.data.positions import check_resume_data, check_state_format
from ancre.data.sources import check_data, split_texts
from ancre.data.tokenizer import Tokenizer, train_tokenizer
from ancre.model import build_model, check_buildable
from ancre.model.llama_import import check_llama_fit, preserving_start
from ancre.pretrained import ConversionError, conversion_step
from ancre.run_folder import RunFolder, RunFolderError, RunLock, RunPlan, plan_run, rewind
from ancre.run_folder import start_over as clear_run
from ancre.tasks.in_training import check_tasks
from ancre.train.engine import DistributedContext, broadcast_from_main
from ancre.train.wandb_sink import check_credentials

logger = logging.getLogger("ancre")

T = TypeVar("T")


def check_inputs(config: AncreConfig) -> None:
    """Checks everything a run reads before it touches the disk.

    Raises:
        ConfigError: The model or topology does not fit together, or ``model.init_from``
            is not a folder written by ``ancre convert``.
        ValueError: A backend asked for where it cannot run.
        MissingDataError: No shards, or the hub is unreachable.
        DataError: No record has ``data.text_field``, or ``data.tokenizer`` is not a
            sentencepiece model.
        FileNotFoundError: ``data.tokenizer`` is missing.
        TaskError: ``eval.tasks`` cannot run (lm-eval missing, a task unknown).
    """
    check_run_inputs(config)
    check_data_inputs(config.data)


def check_run_inputs(config: AncreConfig) -> None:
    """The checks of :func:`check_inputs` that are not about the data section.

    ``run.out_dir``, the model and topology, ``eval.tasks``, ``model.init_from`` and the
    W&B credentials of ``logging.wandb: online``.
    """
    _check_out_dir(config.run.out_dir)
    if (problem := check_credentials(config.logging.wandb)) is not None:
        raise ConfigError("logging.wandb", problem)
    check_buildable(config)
    check_tasks(config.eval)
    if hf_folder(config.model.init_from) is not None:
        check_llama_source(config)
    elif config.model.init_from is not None:
        try:
            conversion_step(config.model.init_from)
        except (FileNotFoundError, ConversionError) as error:
            message = f"is {config.model.init_from!r}: {error}"
            raise ConfigError("model.init_from", message) from None


def check_llama_source(config: AncreConfig) -> None:
    """Checks a ``model.init_from: hf:FOLDER`` source against the model the config builds.

    The wiring must start as the plain residual network, and every tensor of the
    folder's safetensors must be a weight of the model with its shape
    (``ancre.model.llama_import.check_llama_fit``: the files' headers, no weight loaded).

    Raises:
        ConfigError: Naming ``model.init_from`` (or ``topology.form``) and what to do.
    """
    if (reason := preserving_start(config)) is not None:
        raise ConfigError("model.init_from", f"cannot start function-preserving: {reason}")
    folder = hf_folder(config.model.init_from)
    assert folder is not None
    plain = replace(config, topology=replace(config.topology, kind="cascaded"))
    with torch.device("meta"):  # the blocks' shapes (the topology's own are not imported)
        model = build_model(plain, config.model.vocab_size or 0)
    check_llama_fit(folder, {name: tuple(p.shape) for name, p in model.named_parameters()})


def check_data_inputs(data: DataConfig) -> None:
    """The checks of :func:`check_inputs` on the data section: shards, text field, tokenizer.

    A sweep makes them once per distinct data section (a hub check can take seconds).
    """
    check_data(data)
    if data.tokenizer is not None:
        Tokenizer(data.tokenizer)


def _check_out_dir(out_dir: str) -> None:
    """Refuses a ``run.out_dir`` that is, or lies under, a file (nothing could be made there)."""
    path = Path(out_dir)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(
            "run.out_dir",
            f"is {out_dir!r}, but {existing} is a file, not a folder; give a folder (new or "
            "existing) for the run folders",
        )


def on_main(context: DistributedContext, work: Callable[[], T]) -> T:
    """Runs ``work`` on the main process; every process gets its result or its failure.

    The other processes wait for it. When it fails, the main process raises the
    error and the others a :class:`RunFolderError` naming it, so none is left waiting
    in a collective.
    """
    outcome: tuple[str, object] = ("ok", None)
    failure: BaseException | None = None
    if context.is_main:
        try:
            outcome = ("ok", work())
        except Exception as error:
            failure = error
            outcome = ("error", f"{type(error).__name__}: {error}")
    kind, value = broadcast_from_main(outcome)
    if failure is not None:
        raise failure
    if kind == "error":
        raise RunFolderError(f"the main process stopped the run: {value}")
    return value  # type: ignore[return-value]


def claim_folder(config: AncreConfig, lock: RunLock, world_size: int) -> tuple[RunPlan, list[Path]]:
    """Takes the run folder's lock and decides what the run does there (main process).

    Args:
        config: The validated config.
        lock: The folder's lock (released here when the run cannot go ahead).
        world_size: Number of training processes.

    Returns:
        The plan, checked against the checkpoint and the data, and the folders the claim
        created (deepest first), for :func:`remove_empty_folders` if the run fails early.

    Raises:
        RunLockedError: Another job owns the folder.
        RunFolderError, CheckpointError, DataError: The run cannot go ahead as asked.
    """
    folder = RunFolder.of(config)
    created = _missing_folders(folder.root)
    if folder.root.exists() and not folder.root.is_dir():
        raise RunFolderError(f"{folder.root} is a file, not a run folder; choose another run.name")
    folder.root.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire()
    except BaseException:
        remove_empty_folders(created)
        raise
    try:
        plan = plan_run(config, world_size)
        if plan.checkpoint is not None:
            checkpoint = plan.checkpoint.folder
            ranks = range(plan.checkpoint.world_size)
            saved = [checkpoint.read_rank_state(r)["data"] for r in ranks]
            for rank, state in enumerate(saved):
                check_state_format(state, str(checkpoint.rank_state_file(rank)))
            for note in check_resume_data(config.data, config.run.seed, saved):
                logger.warning("%s", note)
    except BaseException:
        lock.release()
        remove_empty_folders(created)
        raise
    if plan.changes:
        logger.warning(
            "resuming with settings that differ from the checkpoint's: %s", "; ".join(plan.changes)
        )
    if plan.diverging:
        logger.warning(
            "these change the training itself: the run will not equal an uninterrupted one (%s)",
            "; ".join(plan.diverging),
        )
    return plan, created


def prepare_folder(plan: RunPlan, config: AncreConfig) -> None:
    """Carries out a plan: starts over, or rewinds to the checkpoint (main process).

    Args:
        plan: What :func:`claim_folder` decided.
        config: The config, written to the folder's config.yaml.
    """
    folder = plan.folder
    if plan.start_over:
        deleted = clear_run(folder, plan.overwrite)
        logger.info(
            "starting %s from scratch (deleted what an earlier run wrote: %s)",
            folder.root, ", ".join(p.name for p in deleted) or "nothing",
        )  # fmt: skip
    # the config first: it is what makes the folder recognisably an ancre run's
    write_text_atomic(folder.config_file, config_yaml(config))
    folder.topology_dir.mkdir(exist_ok=True)
    folder.checkpoints_dir.mkdir(exist_ok=True)
    if plan.resume_from is not None:
        if plan.recovered:
            logger.warning("%s", plan.recovered)
        rewind(folder, plan.resume_from, plan.step)
        logger.info("resuming from %s (step %d)", plan.resume_from, plan.step)


def run_tokenizer(config: AncreConfig, plan: RunPlan) -> None:
    """Writes the run's tokenizer.model: the checkpoint's, ``data.tokenizer``'s, or a new one.

    A new one is trained by the main process on the training data, so the run folder
    stands alone.
    """
    path = plan.folder.tokenizer_file
    if plan.checkpoint is not None:
        write_bytes_atomic(path, plan.checkpoint.folder.tokenizer_file.read_bytes())
    elif config.data.tokenizer is not None:
        write_bytes_atomic(path, Path(config.data.tokenizer).read_bytes())
    elif not path.exists():
        logger.info(
            "training a %d-piece %s tokenizer on the training split (data.tokenizer is null) ...",
            config.data.tokenizer_vocab_size, config.data.tokenizer_model,
        )  # fmt: skip
        skipped: Counter[str] = Counter()
        documents = split_texts(config.data, "train", skipped)
        train_tokenizer(
            documents, path, config.data.tokenizer_vocab_size, config.data.tokenizer_model
        )
        if skipped:
            logger.warning(
                "tokenizer training skipped %s",
                ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())),
            )


def known_tokenizer(config: AncreConfig, plan: RunPlan) -> Path | None:
    """The tokenizer file a run will use when it exists before the run writes anything."""
    if plan.checkpoint is not None:
        return plan.checkpoint.folder.tokenizer_file
    if config.data.tokenizer is not None:
        return Path(config.data.tokenizer)
    return None


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Removes folders a failed run created, when nothing was put in them (deepest first)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
