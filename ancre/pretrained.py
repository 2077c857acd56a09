"""The folder ``ancre convert`` writes, and the one way of building a model from it.

A conversion holds ``model.safetensors`` (its metadata says ``format:
ancre-pretrained-v1`` and the training step), ``config.yaml``, ``topology.json`` and
``tokenizer.model``. Weights are read from safetensors only: loading never unpickles
anything, and needs no DeepSpeed.

Whatever machine the model was trained on, it is built here for inference on this one
(:func:`for_inference`): the attention and mix backends chosen for this machine, no
compilation. A backend never changes the weights, so a model trained with flash_attn
or the Triton mix loads on a CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ancre.config import AncreConfig, load_config
from ancre.model import Transformer, build_model, freeze_if_due

PRETRAINED_FORMAT = "ancre-pretrained-v1"
WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
TOPOLOGY = "topology.json"
TOKENIZER = "tokenizer.model"
COPIED = (CONFIG, TOPOLOGY, TOKENIZER)
"""What a conversion copies from its checkpoint, beside the weights it consolidates."""


class ConversionError(ValueError):
    """A folder that should be a conversion is not one (its weights file says otherwise)."""


@dataclass(frozen=True)
class Conversion:
    """What a conversion folder holds, read and checked.

    Attributes:
        folder: The folder.
        config: Its saved config (as trained; see :func:`for_inference`).
        weights: Parameter name -> tensor, in the dtype written (fp32 or bf16).
        step: The training step of the weights (None when the file does not say).
    """

    folder: Path
    config: AncreConfig
    weights: dict[str, torch.Tensor]
    step: int | None


def is_conversion(path: str | Path) -> bool:
    """Whether a folder has a conversion's weights and config (the format is not read)."""
    folder = Path(path)
    return (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file()


def conversion_step(path: str | Path) -> int | None:
    """Checks that a folder is a conversion, reading only its weights' metadata.

    Args:
        path: The folder.

    Returns:
        The training step its weights are from (None when the file does not say).

    Raises:
        FileNotFoundError: The folder lacks model.safetensors or config.yaml.
        ConversionError: The weights file is not an ancre conversion.
    """
    folder = Path(path)
    if not is_conversion(folder):
        raise FileNotFoundError(
            f"{folder}: needs {WEIGHTS} and {CONFIG}, as `ancre convert CHECKPOINT FOLDER` "
            "writes them"
        )
    try:
        with safe_open(str(folder / WEIGHTS), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises its own error types for a bad header
        raise ConversionError(f"{folder / WEIGHTS}: not a safetensors file ({error})") from None
    if metadata.get("format") != PRETRAINED_FORMAT:
        raise ConversionError(
            f"{folder / WEIGHTS}: format {metadata.get('format')!r}, expected "
            f"{PRETRAINED_FORMAT} (a folder written by ancre convert)"
        )
    step = metadata.get("step", "")
    return int(step) if step.isdigit() else None


def read_conversion(path: str | Path) -> Conversion:
    """Reads a conversion folder after checking its format.

    Raises:
        FileNotFoundError: The folder lacks model.safetensors or config.yaml.
        ConversionError: The weights file is not an ancre conversion.
    """
    folder = Path(path)
    step = conversion_step(folder)
    return Conversion(folder, load_config(folder / CONFIG), load_file(str(folder / WEIGHTS)), step)


def for_inference(config: AncreConfig) -> AncreConfig:
    """The config with the settings that only concern training speed made portable."""
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, attention="auto", init_from=None),
        topology=dataclasses.replace(config.topology, backend="auto"),
        train=dataclasses.replace(config.train, compile=False),
    )


def model_from_weights(
    config: AncreConfig,
    weights: dict[str, torch.Tensor],
    step: int | None,
    device: str | torch.device = "cpu",
) -> Transformer:
    """Builds a trained model for inference on this machine and loads its weights.

    Args:
        config: The config it was trained with.
        weights: Its full state dict (any float dtype; loaded as fp32).
        step: The step of the weights: a matrix frozen at ``topology.freeze_at`` is
            recomputed from the logits it froze (None: not frozen).
        device: Where to put the model.

    Returns:
        The model, in fp32 and eval mode.
    """
    model = build_model(for_inference(config), vocab_size=weights["embed.weight"].shape[0])
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    if step is not None:
        freeze_if_due(model.topology, config.topology, step)
    return model.to(device).eval()


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> Transformer:
    """Rebuilds a converted model for inference on this machine (weights in fp32).

    Args:
        path: A folder written by ``ancre convert``.
        device: Where to put the model.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: The folder lacks model.safetensors or config.yaml.
        ConversionError: The weights file is not an ancre conversion.
    """
    conversion = read_conversion(path)
    return model_from_weights(conversion.config, conversion.weights, conversion.step, device)
