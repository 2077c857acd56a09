"""Loading a model written by ``ancre convert``, without DeepSpeed.

Weights are read from safetensors only: loading never unpickles anything.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ancre.config import load_config
from ancre.model import Transformer, build_model, freeze_if_due

PRETRAINED_FORMAT = "ancre-pretrained-v1"
WEIGHTS = "model.safetensors"


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> Transformer:
    """Rebuilds a converted model: its config, then its weights (in fp32).

    Args:
        path: A folder written by ``ancre convert``.
        device: Where to put the model.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: The folder lacks model.safetensors or config.yaml.
        ValueError: The weights file is not an ancre conversion.
    """
    folder = Path(path)
    weights_file = folder / WEIGHTS
    if not weights_file.is_file() or not (folder / "config.yaml").is_file():
        raise FileNotFoundError(f"{folder}: needs {WEIGHTS} and config.yaml (from ancre convert)")
    with safe_open(str(weights_file), framework="pt") as handle:
        metadata = handle.metadata() or {}
        found = metadata.get("format")
    if found != PRETRAINED_FORMAT:
        raise ValueError(f"{weights_file}: format {found!r}, expected {PRETRAINED_FORMAT}")
    weights = load_file(str(weights_file))
    config = load_config(folder / "config.yaml")
    model = build_model(config, vocab_size=weights["embed.weight"].shape[0])
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    model = model.to(device).eval()
    # a matrix frozen at topology.freeze_at is recomputed from the logits it froze
    freeze_if_due(model.topology, config.topology, int(metadata.get("step", 0)))
    return model
