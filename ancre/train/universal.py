"""A checkpoint's universal form: every parameter's whole fp32 weights and Adam moments.

DeepSpeed's universal checkpoint holds one folder per parameter
(``zero/<name>/fp32.pt``, ``exp_avg.pt``, ``exp_avg_sq.pt``, ``step.pt``), whole, whatever
the number of processes and the ZeRO stage that wrote it; DeepSpeed's loader
(``"checkpoint": {"load_universal": true}``) partitions it for the world that reads it.
:func:`make_universal` writes it once, into ``<checkpoint>/universal``:

- from ZeRO 1-3, with DeepSpeed's own converter (``ds_to_universal``), which gathers the
  partitions of every process;
- from ZeRO 0, where every process held whole tensors, from the checkpoint's model and
  optimiser state (nothing to gather, so nothing to convert: the tensors are copied).

DeepSpeed 0.19's converter writes what the loader of the same ZeRO family reads: a
ZeRO-1/2 loader needs a ``step.pt`` per parameter and ``mp_rank_00_model_states.pt``, a
ZeRO-3 loader the step inside ``zero/optimizer_state.pt`` and
``zero_pp_rank_0_mp_rank_00_model_states.pt``. :func:`_complete` adds whichever of these
the converter left out (the step is one number, the model-states file the same file
under its other name), so that ZeRO 1, 2 and 3 all read one folder. The tensors
themselves are DeepSpeed's, unchanged.

The folder is made under ``universal.partial`` and renamed when whole; its manifest
(``ancre-universal.json``, written last) lists every file with its size and sha256 and
names the checkpoint it was made from (the sha256 of that checkpoint's manifest).
:func:`verify_universal` checks it before every use; a universal form that fails (a
truncated or altered file, a garbage or older manifest, another checkpoint's) is made
again from the checkpoint, which is intact. A write that fails for want of space
removes what it wrote and raises the ``OSError`` of a full disk, which ends the run with
exit code 6 like a checkpoint save that found the disk full.
"""

from __future__ import annotations

import errno
import filecmp
import logging
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ancre.atomic import write_json_atomic
from ancre.checkpoint import CheckpointError, CheckpointFolder, check_files, file_table, read_json
from ancre.checkpoint import sha256_of as checkpoint_sha256
from ancre.config import AncreConfig
from ancre.model import Transformer
from ancre.train.engine import engine_to_universal
from ancre.train.optimizers import parameter_groups
from ancre.train.write_failures import DISK_FULL, write_error

logger = logging.getLogger("ancre")

FORMAT = "ancre-universal"
VERSION = 2
"""2: the manifest lists every file (size, sha256) and the checkpoint's manifest hash."""
MARKER = "ancre-universal.json"
"""The universal form's manifest, written last: a universal folder with it is complete."""
MARKER_KEYS = ("format", "version", "source_zero_stage", "checkpoint", "files")
MODEL_STATES = ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")
"""The model-states file under the names the ZeRO-1/2 and the ZeRO-3 loaders look for."""
MOMENTS = ("fp32", "exp_avg", "exp_avg_sq")


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder``, a file linked twice counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def verify_universal(checkpoint: CheckpointFolder) -> dict[str, Any]:
    """Checks a checkpoint's universal form against its manifest (every file hashed once).

    Args:
        checkpoint: The checkpoint folder whose ``universal/`` is checked.

    Returns:
        The manifest: format, version, source stage, seconds taken, bytes, files.

    Raises:
        CheckpointError: It is not made, its manifest is missing, garbage, of an older
            version or of another checkpoint, or a file is missing or differs; the
            message names the file.
    """
    folder = checkpoint.universal
    path = folder / MARKER
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not made")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the universal form is incomplete")
    marker = read_json(path, "the universal form's manifest")
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a manifest of {FORMAT}")
    if marker.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: version {marker.get('version')!r}, made by an earlier ancre without "
            f"the hashes of version {VERSION}"
        )
    missing = [key for key in MARKER_KEYS if key not in marker]
    if missing:
        raise CheckpointError(f"{path}: lacks the keys {', '.join(missing)}")
    if marker["checkpoint"] != checkpoint_sha256(checkpoint.manifest_file):
        raise CheckpointError(f"{path}: made from another state of {checkpoint.path}")
    check_files(folder, marker["files"], path)
    return marker


def make_universal(
    checkpoint: CheckpointFolder, zero_stage: int, model: Transformer, config: AncreConfig
) -> tuple[dict[str, Any], bool]:
    """Writes ``<checkpoint>/universal`` unless a verified one is there (main process).

    A universal form that fails :func:`verify_universal` is said, removed (ancre made it,
    from the checkpoint beside it) and made again. No collectives.

    Args:
        checkpoint: A verified checkpoint folder.
        zero_stage: The ZeRO stage that wrote it.
        model: A model of the checkpoint's shape (names the parameters of a ZeRO-0
            optimiser state, which knows them by their place in the groups).
        config: The run config (the parameter groups).

    Returns:
        The manifest (format, version, source stage, seconds taken, bytes written, files),
        and whether it was made now (False: a verified one was there).

    Raises:
        CheckpointError: The checkpoint folder cannot be written to, or its state does
            not fit the model.
        OSError: The disk filled up (errno ENOSPC; what was written is removed).
    """
    final = checkpoint.universal
    if final.exists():
        try:
            return verify_universal(checkpoint), False
        except CheckpointError as error:
            logger.warning(
                "%s; making the universal form again from %s, which is intact", error,
                checkpoint.path,
            )  # fmt: skip
            _remove(final)
    partial = final.with_name(final.name + ".partial")
    started = time.perf_counter()
    try:
        _remove(partial)  # an earlier attempt that died; only ancre writes here
        _write(checkpoint, partial, zero_stage, model, config)
        marker = {
            "format": FORMAT,
            "version": VERSION,
            "source_zero_stage": zero_stage,
            "checkpoint": checkpoint_sha256(checkpoint.manifest_file),
            "seconds": round(time.perf_counter() - started, 3),
            "bytes": folder_bytes(partial),
            "files": file_table(partial, MARKER),
        }
        write_json_atomic(partial / MARKER, marker)
    except PermissionError as error:
        raise CheckpointError(
            f"{checkpoint.path}: cannot write its universal form there ({error}); copy the "
            "checkpoint folder somewhere writable and resume from the copy"
        ) from None
    except OSError as error:
        _remove(partial)
        if error.errno not in DISK_FULL:
            raise
        raise _no_space(error, checkpoint, model) from error
    except RuntimeError as error:  # torch.save reports a failed write as a RuntimeError
        failed = write_error(error, partial)
        _remove(partial)
        if failed is None:
            raise
        if failed.errno not in DISK_FULL:
            raise failed from error
        raise _no_space(failed, checkpoint, model) from error
    os.replace(partial, final)
    return marker, True


def _write(
    checkpoint: CheckpointFolder,
    partial: Path,
    zero_stage: int,
    model: Transformer,
    config: AncreConfig,
) -> None:
    """Writes the universal form's tensors into ``partial`` (everything but the manifest)."""
    if zero_stage == 0:
        _from_whole(checkpoint.engine, partial, model, parameter_groups(model, config))
    else:
        engine_to_universal(checkpoint.engine, partial)
        stray = checkpoint.path / "latest_universal"  # the converter's pointer to partial
        if stray.is_file() and stray.read_text().strip() == partial.name:
            stray.unlink()
        for copied in (partial / name for name in MODEL_STATES):
            source = checkpoint.engine / copied.name
            if copied.is_file() and source.is_file() and filecmp.cmp(source, copied, False):
                copied.unlink()  # the converter's copy of a file the checkpoint has
                _link(source, copied)
    # (a model inside a ZeRO-3 engine holds partitions; ds_shape is the whole shape)
    shapes = {n: getattr(p, "ds_shape", p.shape) for n, p in model.named_parameters()}
    _complete(partial, shapes)


def _no_space(error: OSError, checkpoint: CheckpointFolder, model: Transformer) -> OSError:
    """The full-disk error of a universal form, saying what it needs and what is intact."""
    numel = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    needed = 3 * 4 * numel  # fp32 weights and two Adam moments, whole
    return OSError(
        errno.ENOSPC,
        f"{error.strerror or os.strerror(errno.ENOSPC)}: the universal form of "
        f"{checkpoint.path} (about {needed / 1e6:.0f} MB: fp32 weights and Adam moments, "
        "whole) does not fit beside it; the checkpoint is intact and nothing of the "
        "universal form was kept",
        error.filename,
    )


def _remove(folder: Path) -> None:
    """Removes a universal folder (or its partial one) that ancre wrote, if it is there."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)


def _from_whole(engine_folder: Path, out: Path, model: Transformer, groups: list[Any]) -> None:
    """The universal form of a ZeRO-0 engine folder: its whole tensors, one folder each."""
    states = torch.load(
        engine_folder / MODEL_STATES[0], map_location="cpu", weights_only=True
    )  # fmt: skip
    module, optimizer = states["module"], states["optimizer"]
    names = {id(p): name for name, p in model.named_parameters()}
    saved_groups = optimizer["param_groups"]
    if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in groups]:
        raise CheckpointError(
            f"{engine_folder}: its optimiser groups hold "
            f"{[len(g['params']) for g in saved_groups]} parameters, this model's "
            f"{[len(g['params']) for g in groups]}"
        )
    zero = out / "zero"
    for saved, group in zip(saved_groups, groups, strict=True):
        for index, param in zip(saved["params"], group["params"], strict=True):
            name = names[id(param)]
            state = optimizer["state"][index]
            (zero / name).mkdir(parents=True)
            tensors = {"fp32": module[name].float(), **{k: state[k] for k in MOMENTS[1:]}}
            for key, tensor in tensors.items():
                torch.save(
                    {"param": tensor.reshape(param.shape), "cat_dim": 0}, zero / name / f"{key}.pt"
                )
            torch.save(state["step"], zero / name / "step.pt")
    common = {
        "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in saved_groups],
        "ds_version": states.get("ds_version"),
    }
    torch.save(common, zero / "optimizer_state.pt")
    _link(engine_folder / MODEL_STATES[0], out / MODEL_STATES[0])


def _link(source: Path, target: Path) -> None:
    """``target`` as a second name of ``source`` (a copy where links are not possible)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _complete(out: Path, shapes: Mapping[str, torch.Size]) -> None:
    """Adds what the other ZeRO family's loader needs (see the module docstring).

    Args:
        out: The universal folder.
        shapes: Every parameter's shape (ZeRO-3's converter saves flat tensors, which the
            ZeRO-1/2 loader cannot read; they are given their shape, values untouched).
    """
    zero = out / "zero"
    for folder in (p for p in zero.iterdir() if p.is_dir()):
        for key in MOMENTS:
            path = folder / f"{key}.pt"
            if path.is_file():
                saved = torch.load(path, map_location="cpu", weights_only=True)
                if isinstance(saved, torch.Tensor):
                    shaped = saved.reshape(shapes[folder.name]).clone()  # its own storage
                    torch.save({"param": shaped, "cat_dim": 0}, path)
    common = torch.load(zero / "optimizer_state.pt", map_location="cpu", weights_only=False)
    folders = sorted(p for p in zero.iterdir() if p.is_dir())
    steps = [p / "step.pt" for p in folders if (p / "step.pt").is_file()]
    if steps:
        step = torch.load(steps[0], weights_only=True)
    else:
        step = common["optimizer_state_dict"]["state"][0]["step"]
    for folder in folders:
        if (folder / "exp_avg.pt").is_file() and not (folder / "step.pt").is_file():
            torch.save(step, folder / "step.pt")
    groups = common["param_groups"]
    # ZeRO-3's converter keeps rank 0's whole partition (weights, moments) here too; the
    # loaders read only the step and the groups from this file
    common.pop("fp32_flat_groups", None)
    common["optimizer_state_dict"] = {
        "state": {i: {"step": step} for i in range(len(groups))},
        "param_groups": common.get("optimizer_state_dict", {}).get("param_groups", groups),
    }
    if common.get("ds_version") is None:
        common["ds_version"] = _model_states_version(out)
    torch.save(common, zero / "optimizer_state.pt")
    present = [out / name for name in MODEL_STATES if (out / name).is_file()]
    if not present:
        raise CheckpointError(f"{out}: the converter wrote no model-states file")
    for name in MODEL_STATES:
        if not (out / name).is_file():
            _link(present[0], out / name)


def _model_states_version(out: Path) -> str:
    """The DeepSpeed version named in the model-states file."""
    path = next(out / n for n in MODEL_STATES if (out / n).is_file())
    return str(torch.load(path, map_location="cpu", weights_only=False).get("ds_version"))


def read_universal(
    checkpoint: CheckpointFolder, names: Iterable[str]
) -> tuple[dict[str, Mapping[str, torch.Tensor]], int]:
    """Whole fp32 weights and Adam moments of the named parameters, and Adam's step.

    Args:
        checkpoint: A checkpoint whose universal form is made.
        names: The trainable parameters wanted.

    Returns:
        Name -> ``fp32``, ``exp_avg``, ``exp_avg_sq``; and the step count.
    """
    zero = checkpoint.universal / "zero"
    tensors: dict[str, Mapping[str, torch.Tensor]] = {}
    step = None
    for name in names:
        folder = zero / name
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: missing; the universal form lacks {name}")
        tensors[name] = {
            key: torch.load(folder / f"{key}.pt", map_location="cpu", weights_only=True)["param"]
            for key in MOMENTS
        }
        step = int(torch.load(folder / "step.pt", weights_only=True))
    return tensors, step or 0
