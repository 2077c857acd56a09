"""A trained model from a training checkpoint (any ZeRO stage) or an ``ancre convert`` folder.

Loading needs no process group: a checkpoint's weights are consolidated from its
engine files (``consolidated_weights``), a conversion's read from safetensors. The model
is built for inference wherever it is loaded: no compilation, and the attention and mix
backends chosen for this machine (a backend never changes the weights).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ancre.checkpoint import MANIFEST, CheckpointFolder
from ancre.config import AncreConfig
from ancre.data.tokenizer import Tokenizer
from ancre.model import Transformer
from ancre.pretrained import (
    TOKENIZER,
    WEIGHTS,
    is_conversion,
    model_from_weights,
    read_conversion,
)
from ancre.train.engine import consolidated_weights


@dataclass(frozen=True)
class TrainedModel:
    """A model with what it was trained with.

    Attributes:
        model: The model, in fp32 and eval mode.
        tokenizer: Its tokenizer.
        config: The run's resolved config (the model is built from it
            :func:`ancre.pretrained.for_inference`).
        folder: The checkpoint or conversion folder it was read from.
        step: The training step of the weights (None when a conversion does not say).
        tokens: Training tokens seen (None for a conversion).
        is_checkpoint: True for a training checkpoint, False for a conversion.
    """

    model: Transformer
    tokenizer: Tokenizer
    config: AncreConfig
    folder: Path
    step: int | None
    tokens: int | None
    is_checkpoint: bool


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Loads a checkpoint folder (verified first) or a folder written by ``ancre convert``.

    Args:
        path: ``<run>/checkpoints/step_XXXXXXXX``, or a conversion folder.
        device: Where to put the model.

    Returns:
        The model, its tokenizer and config.

    Raises:
        FileNotFoundError: The folder is neither a checkpoint nor a conversion.
        CheckpointError: The checkpoint does not verify.
        ConversionError: The weights file is not an ancre conversion.
    """
    folder = Path(path)
    if (candidate := CheckpointFolder(folder)).has_manifest():
        checkpoint = candidate.verify()
        with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed's reader prints its progress
            weights = consolidated_weights(checkpoint.folder.engine, checkpoint.zero_stage)
        config, step, tokens = checkpoint.config, checkpoint.step, checkpoint.state.tokens
        tokenizer, is_checkpoint = checkpoint.folder.tokenizer_file, True
    elif is_conversion(folder):
        conversion = read_conversion(folder)
        config, weights, step = conversion.config, conversion.weights, conversion.step
        tokens, tokenizer, is_checkpoint = None, folder / TOKENIZER, False
    else:
        raise FileNotFoundError(
            f"{folder}: neither a training checkpoint ({MANIFEST}) nor a folder written by "
            f"ancre convert ({WEIGHTS}); give <run>/checkpoints/step_XXXXXXXX or a conversion"
        )
    model = model_from_weights(config, weights, step, device)
    return TrainedModel(model, Tokenizer(tokenizer), config, folder, step, tokens, is_checkpoint)
