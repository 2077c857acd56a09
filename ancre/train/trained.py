"""A trained model from a training checkpoint (any ZeRO stage) or an ``ancre convert`` folder.

Loading needs no process group: a checkpoint's weights are consolidated from its
engine files (``consolidated_weights``), a conversion's read from safetensors. The model
is built for inference wherever it is loaded: no compilation, and the attention and mix
backends chosen for this machine (a backend never changes the weights).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ancre.checkpoint import MANIFEST, read_trainer_state, verify_checkpoint
from ancre.config import AncreConfig, load_config
from ancre.data.tokenizer import Tokenizer
from ancre.model import Transformer, build_model, freeze_if_due
from ancre.pretrained import PRETRAINED_FORMAT, WEIGHTS
from ancre.train.engine import consolidated_weights

CONFIG = "config.yaml"
TOKENIZER = "tokenizer.model"


@dataclass(frozen=True)
class TrainedModel:
    """A model with what it was trained with.

    Attributes:
        model: The model, in fp32 and eval mode.
        tokenizer: Its sentencepiece tokenizer.
        config: The run's resolved config (the model is built from it
            :func:`for_inference`).
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


def for_inference(config: AncreConfig) -> AncreConfig:
    """The config with the settings that only concern training speed made portable."""
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, attention="auto", init_from=None),
        topology=dataclasses.replace(config.topology, backend="auto"),
        train=dataclasses.replace(config.train, compile=False),
    )


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
        ValueError: The weights file is not an ancre conversion.
    """
    folder = Path(path)
    if (folder / MANIFEST).is_file():
        manifest = verify_checkpoint(folder)
        with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed's reader prints its progress
            weights = consolidated_weights(folder / "engine", manifest["zero_stage"])
        step, tokens, is_checkpoint = int(manifest["step"]), read_trainer_state(folder).tokens, True
    elif (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file():
        metadata = _metadata(folder / WEIGHTS)
        if metadata.get("format") != PRETRAINED_FORMAT:
            raise ValueError(
                f"{folder / WEIGHTS}: format {metadata.get('format')!r}, expected "
                f"{PRETRAINED_FORMAT} (a folder written by ancre convert)"
            )
        weights = load_file(str(folder / WEIGHTS))
        step = int(metadata["step"]) if metadata.get("step", "").isdigit() else None
        tokens, is_checkpoint = None, False
    else:
        raise FileNotFoundError(
            f"{folder}: neither a training checkpoint ({MANIFEST}) nor a folder written by "
            f"ancre convert ({WEIGHTS}); give <run>/checkpoints/step_XXXXXXXX or a conversion"
        )
    config = load_config(folder / CONFIG)
    model = build_model(for_inference(config), vocab_size=weights["embed.weight"].shape[0])
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    if step is not None:  # a matrix frozen at topology.freeze_at, recomputed from its logits
        freeze_if_due(model.topology, config.topology, step)
    model = model.to(device).eval()
    return TrainedModel(
        model, Tokenizer(folder / TOKENIZER), config, folder, step, tokens, is_checkpoint
    )


def _metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file."""
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})
