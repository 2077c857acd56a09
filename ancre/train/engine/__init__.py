"""Everything distributed: the process group, the DeepSpeed engine, its checkpoint files.

This package is the only part of ancre that imports deepspeed or torch.distributed:

- ``group``: joining the process group a launcher describes; collectives.
- ``deepspeed_engine``: the model and its optimiser in a DeepSpeed engine; one
  optimiser step (micro-batches in, one update out); saving and loading.
- ``files``: an engine folder's weights without a process group, and its universal form.
- ``setup``: what an engine is built from (DeepSpeed's config dict, its Muon) and whole
  ZeRO-3 parameters for reading or writing.
- ``construction``: building a model partitioned as it is made (ZeRO-3).

Precision: ``train.precision: bf16`` runs DeepSpeed's ``torch_autocast`` mode. The
parameters stay fp32 (they are the master weights the optimiser updates), matrix
work runs in bf16 under autocast, and the topology logits and their softmax stay
fp32 as docs/method.md requires. DeepSpeed's ``bf16`` section is not used because it casts
every parameter, the topology logits included, to bf16.
"""

import os

import torch

if not torch.cuda.is_available():
    # DeepSpeed picks its accelerator when imported; without a GPU it must be the CPU.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")

from ancre.train.engine.construction import partitioned_construction  # noqa: E402
from ancre.train.engine.deepspeed_engine import Batch, Engine, StepResult  # noqa: E402
from ancre.train.engine.files import consolidated_weights, engine_to_universal  # noqa: E402
from ancre.train.engine.group import (  # noqa: E402
    DistributedContext,
    any_process,
    barrier,
    broadcast_from_main,
    describe_device,
    init_distributed,
)
from ancre.train.engine.setup import (  # noqa: E402
    deepspeed_config,
    deepspeed_muon,
    whole_parameters,
)

__all__ = [
    "Batch",
    "DistributedContext",
    "Engine",
    "StepResult",
    "any_process",
    "barrier",
    "broadcast_from_main",
    "consolidated_weights",
    "deepspeed_config",
    "deepspeed_muon",
    "describe_device",
    "engine_to_universal",
    "init_distributed",
    "partitioned_construction",
    "whole_parameters",
]
