"""``ancre convert``: a checkpoint of any ZeRO stage -> consolidated safetensors weights.

The output folder holds ``model.safetensors`` (fp32 or bf16; the topology logits stay
fp32), ``config.yaml``, ``topology.json`` and ``tokenizer.model``;
:func:`ancre.pretrained.load_pretrained` rebuilds the model from it without DeepSpeed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from ancre.checkpoint import verify_checkpoint
from ancre.pretrained import PRETRAINED_FORMAT, WEIGHTS
from ancre.train.engine import consolidated_weights

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def convert_checkpoint(folder: Path, out_dir: Path, dtype: str = "fp32") -> Path:
    """Writes a checkpoint's consolidated weights, config, topology and tokenizer.

    Args:
        folder: A checkpoint folder (``<run>/checkpoints/step_XXXXXXXX``).
        out_dir: Where to write; created if missing.
        dtype: ``fp32`` or ``bf16`` for the weights (topology logits stay fp32).

    Returns:
        The path of the written ``model.safetensors``.

    Raises:
        CheckpointError: The checkpoint does not verify.
        ValueError: An unknown dtype.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    manifest = verify_checkpoint(folder)
    weights = consolidated_weights(folder / "engine", manifest["zero_stage"])
    weights = {
        name: (t if name.startswith("topology.") else t.to(DTYPES[dtype])).contiguous()
        for name, t in weights.items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"format": PRETRAINED_FORMAT, "step": str(manifest["step"]), "dtype": dtype}
    save_file(weights, str(out_dir / WEIGHTS), metadata=metadata)
    for name in ("config.yaml", "topology.json", "tokenizer.model"):
        shutil.copyfile(folder / name, out_dir / name)
    return out_dir / WEIGHTS
