"""One loader of a converted model: built for this machine, its format checked everywhere."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

import ancre
from ancre.config import ConfigError, load_config
from ancre.pretrained import ConversionError, conversion_step, read_conversion
from ancre.train.prepare import check_inputs
from ancre.train.trained import load_trained
from tests.helpers.conversions import tiny_model, write_conversion


def trained_for_a_gpu(config):
    """The config as a GPU run would save it: backends a CPU cannot run, compiled."""
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, attention="flash_attn"),
        topology=dataclasses.replace(config.topology, backend="triton"),
        train=dataclasses.replace(config.train, compile=True),
    )


def test_a_model_trained_with_gpu_backends_loads_on_the_cpu(tmp_path, sample_tokenizer):
    model, config = tiny_model("ancre-frozen", sample_tokenizer.vocab_size)
    folder = write_conversion(model, trained_for_a_gpu(config), sample_tokenizer.path, tmp_path)
    assert load_config(folder / "config.yaml").model.attention == "flash_attn"
    inputs = torch.randint(0, sample_tokenizer.vocab_size, (2, 16))
    with torch.no_grad():
        expected = model(inputs)
        pretrained = ancre.load_pretrained(folder)
        trained = load_trained(folder)
        torch.testing.assert_close(pretrained(inputs), expected, rtol=0, atol=0)
        torch.testing.assert_close(trained.model(inputs), expected, rtol=0, atol=0)
    # the conversion's step (7) re-freezes the matrix frozen at step 5
    assert trained.step == 7 and pretrained.topology.wiring is not None


def foreign_folder(tmp_path, sample_tokenizer):
    """A folder with the conversion's file names whose weights no ancre convert wrote."""
    model, config = tiny_model("cascaded", sample_tokenizer.vocab_size)
    folder = write_conversion(model, config, sample_tokenizer.path, tmp_path / "foreign")
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder, config


def test_every_loader_refuses_weights_of_another_format(tmp_path, sample_tokenizer):
    folder, config = foreign_folder(tmp_path, sample_tokenizer)
    for load in (conversion_step, read_conversion, ancre.load_pretrained, load_trained):
        with pytest.raises(ConversionError, match="format 'pt', expected ancre-pretrained-v1"):
            load(folder)
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ConversionError, match="not a safetensors file"):
        read_conversion(folder)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, init_from=str(folder)),
        run=dataclasses.replace(config.run, out_dir=str(tmp_path / "runs")),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="not a safetensors file") as caught:
        check_inputs(config)  # training from it is refused before the disk is touched
    assert caught.value.key == "model.init_from" and not (tmp_path / "runs").exists()
