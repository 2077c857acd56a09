"""An engine folder on disk: its whole weights, and its universal form, without a process group."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import torch
from deepspeed.checkpoint.ds_to_universal import main as ds_to_universal
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint


def engine_to_universal(engine_folder: Path, out: Path) -> None:
    """Writes DeepSpeed's universal checkpoint of a ZeRO 1-3 engine folder into ``out``.

    Needs no process group. DeepSpeed's converter gathers every parameter's fp32 weights
    and Adam moments from all partitions into one folder per parameter
    (``out/zero/<name>/fp32.pt, exp_avg.pt, exp_avg_sq.pt``). It also writes a
    ``latest_universal`` file beside ``out``, naming it.
    """
    args = argparse.Namespace(
        input_folder=str(engine_folder), output_folder=str(out), num_extract_workers=1,
        num_merge_workers=1, keep_temp_folder=False, strict=True,
        # the version tag DeepSpeed asks of clients that save for conversion; ancre's
        # checkpoints are plain data parallel, for which the tag is all there is
        inject_missing_state=True,
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ds_to_universal(args)


def consolidated_weights(engine_folder: Path, zero_stage: int) -> dict[str, torch.Tensor]:
    """The full fp32 weights of a checkpoint's engine/ folder, from any ZeRO stage.

    Needs no process group. Without ZeRO the weights are read from the model file
    (tensors only, nothing else unpickled); with ZeRO 1-3 they are gathered from the
    fp32 master partitions of every process by DeepSpeed's own reader.

    Args:
        engine_folder: ``<checkpoint>/engine``.
        zero_stage: The ZeRO stage the checkpoint was written with.

    Returns:
        Parameter name -> fp32 tensor, as in the model's state_dict.
    """
    if zero_stage == 0:
        states = torch.load(
            engine_folder / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True
        )
        return {k: v.float() for k, v in states["module"].items()}
    state = get_fp32_state_dict_from_zero_checkpoint(
        str(engine_folder.parent), tag=engine_folder.name
    )
    return dict(state)
