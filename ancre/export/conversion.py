"""``ancre convert``: a checkpoint of any ZeRO stage -> consolidated safetensors weights.

The output folder holds ``model.safetensors`` (fp32 or bf16; the topology logits stay
fp32), ``config.yaml``, ``topology.json`` and ``tokenizer.model`` (the format is
:mod:`ancre.pretrained`'s); :func:`ancre.pretrained.load_pretrained` rebuilds the model
from it without DeepSpeed. The output folder is checked and marked as
:mod:`ancre.export.output` says.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from ancre.checkpoint import CheckpointFolder
from ancre.export.output import check_output_folder, write_export_marker
from ancre.pretrained import CONFIG, COPIED, PRETRAINED_FORMAT, TOKENIZER, TOPOLOGY, WEIGHTS
from ancre.run_folder import EXPORT_MARKER
from ancre.train.engine import consolidated_weights

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
WRITTEN = (EXPORT_MARKER, WEIGHTS, *COPIED)
"""What a conversion writes: an output folder holding only these is replaced."""


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
        FileExistsError: ``out_dir`` is inside the checkpoint, or holds files that a
            conversion does not write.
        ValueError: An unknown dtype.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    check_output_folder(folder, out_dir, WRITTEN)
    checkpoint = CheckpointFolder(folder).verify()
    weights = consolidated_weights(checkpoint.folder.engine, checkpoint.zero_stage)
    weights = {
        name: (t if name.startswith("topology.") else t.to(DTYPES[dtype])).contiguous()
        for name, t in weights.items()
    }
    write_export_marker(out_dir, "conversion", folder, WRITTEN)
    metadata = {"format": PRETRAINED_FORMAT, "step": str(checkpoint.step), "dtype": dtype}
    save_file(weights, str(out_dir / WEIGHTS), metadata=metadata)
    source = checkpoint.folder
    copied = {CONFIG: source.config_file, TOPOLOGY: source.topology_file,
              TOKENIZER: source.tokenizer_file}  # fmt: skip
    for name, path in copied.items():
        shutil.copyfile(path, out_dir / name)
    return out_dir / WEIGHTS
