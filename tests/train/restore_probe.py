"""Loads a checkpoint the way a resumed run does, then saves the engine at once.

Run under torchrun (or alone) by tests/train/test_reshard.py:

    restore_probe.py CHECKPOINT OUT [key=value ...]

The run's own functions (resume_route, prepare_universal, restore) load the state into
an engine of this world and ZeRO stage; OUT/engine then holds what the first resumed
step starts from, for the test to consolidate and compare with the checkpoint.

With OUT ending in ``.json`` (one process at ZeRO 0 only, where the engine holds whole
tensors) nothing is saved: the engine's weights and Adam moments are compared with the
checkpoint's universal form in place, and OUT gets the names compared and those that
differ (a model too large to save twice, tests/train/test_big_presets.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ancre.checkpoint import CheckpointFolder
from ancre.config import load_config
from ancre.data.loader import TrainLoader
from ancre.data.tokenizer import Tokenizer
from ancre.model import build_model
from ancre.train.checkpointer import Resumption
from ancre.train.engine import Engine, init_distributed
from ancre.train.universal import read_universal


def main(path: Path, out: Path, overrides: list[str]) -> None:
    checkpoint = CheckpointFolder(path).verify()
    config = load_config(checkpoint.folder.config_file, overrides)
    context = init_distributed(config.train.dist_timeout_s)
    tokenizer = Tokenizer(checkpoint.folder.tokenizer_file)
    torch.manual_seed(config.run.seed + 1)  # other initial weights: all must come from disk
    model = build_model(config, tokenizer.vocab_size)
    pending = Resumption.prepare(checkpoint, model, config, context)
    engine = Engine(model, config, context, pending.route.load_universal)
    batches = TrainLoader(
        config.data, tokenizer, config.train.micro_batch_size, context.rank, context.world_size
    )
    pending.restore(engine, batches, config)
    if out.suffix == ".json":
        compare(engine, checkpoint.folder, out)
        engine.close()
        return
    engine.save(out / "engine")
    if context.is_main:  # a universal form names the manifest of the state it is made from
        CheckpointFolder(out).manifest_file.write_text('{"probe": "' + str(path) + '"}')
    engine.close()


def compare(engine: Engine, folder: CheckpointFolder, out: Path) -> None:
    """Writes to ``out`` which whole tensors of a ZeRO-0 engine equal the universal form's."""
    state = engine._client_optimizer.state
    compared, differ = [], []
    for name, param in engine.model.named_parameters():
        if not param.requires_grad:
            continue
        saved = read_universal(folder, [name])[0][name]  # one at a time: a large model
        moments = {key: state[param][key] for key in ("exp_avg", "exp_avg_sq")}
        tensors = {"fp32": param.detach(), **moments}
        for key, tensor in tensors.items():
            compared.append(f"{name}:{key}")
            if not torch.equal(tensor, saved[key].view_as(tensor)):
                differ.append(f"{name}:{key}")
    out.write_text(json.dumps({"compared": compared, "differ": differ}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
