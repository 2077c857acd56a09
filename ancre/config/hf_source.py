"""``model.init_from: hf:FOLDER``: the shape and tokenizer of a stock Llama checkpoint.

A local Hugging Face ``LlamaForCausalLM`` folder (``config.json``, safetensors weights,
``tokenizer.model`` or ``tokenizer.json``) decides the model's shape: when the config
is loaded, ``model.preset`` is set to null and the shape keys are taken from
``config.json`` (:data:`SHAPE_KEYS`), and a null ``data.tokenizer`` becomes the
folder's tokenizer. The weights are read when the run starts
(``ancre.model.llama_import``). What ancre cannot compute the same way is refused here,
before anything runs: another architecture, rope scaling, biases, another activation,
a head size other than hidden / heads.

A resumed run reads its saved config, whose shape is already filled: the source folder
is read again only when it is still there.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ancre.config.checks import ConfigError

HF_PREFIX = "hf:"
SHAPE_KEYS = {
    "hidden_size": "hidden_size", "intermediate_size": "intermediate_size",
    "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
    "num_kv_heads": "num_key_value_heads", "vocab_size": "vocab_size",
    "rope_theta": "rope_theta", "norm_eps": "rms_norm_eps",
}  # fmt: skip
"""ancre's ``model`` key -> the ``config.json`` key it is read from."""
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")
"""A source's tokenizer, in the order looked for (sentencepiece first)."""


def hf_folder(init_from: str | None) -> Path | None:
    """The folder of an ``hf:`` ``model.init_from``, or None for anything else."""
    if init_from is None or not init_from.startswith(HF_PREFIX):
        return None
    return Path(init_from.removeprefix(HF_PREFIX)).expanduser()


def read_llama_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a Llama folder, checked for what ancre can compute.

    Raises:
        ConfigError: Naming ``model.init_from``: no readable config.json, or a model
            ancre cannot represent (and why).
    """
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(
            "model.init_from", f"{path}: {error}; give a Hugging Face model folder "
            "(config.json, *.safetensors, the tokenizer)",
        ) from None  # fmt: skip
    problems = []
    architectures = config.get("architectures") or []
    if config.get("model_type") != "llama" or "LlamaForCausalLM" not in architectures:
        problems.append(f"it is a {config.get('model_type')!r} model ({architectures}), not "
                        "LlamaForCausalLM")  # fmt: skip
    rope = config.get("rope_parameters") or {}  # transformers 5 (older: rope_theta, rope_scaling)
    if config.get("rope_scaling") or rope.get("rope_type", "default") != "default":
        scaling = config.get("rope_scaling") or rope
        problems.append(f"rope scaling {scaling} (ancre's rotary embedding is unscaled)")
    for bias in ("attention_bias", "mlp_bias"):
        if config.get(bias):
            problems.append(f"{bias} is true (ancre's projections have no bias)")
    if config.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {config['hidden_act']!r} (ancre's MLP is SwiGLU)")
    heads = config.get("num_attention_heads") or 1
    if config.get("head_dim") not in (None, config.get("hidden_size", 0) // heads):
        problems.append(f"head_dim {config['head_dim']} is not hidden_size / heads")
    if problems:
        raise ConfigError("model.init_from", f"{path}: ancre cannot represent this model: "
                          + "; ".join(problems))  # fmt: skip
    return config


def with_hf_source(config: Any) -> Any:
    """The config with the shape and tokenizer of its ``hf:`` source filled in.

    Args:
        config: An unvalidated ``AncreConfig``.

    Returns:
        The config (unchanged without an ``hf:`` source, or when the source folder is
        gone and the saved shape is complete: a resumed run).

    Raises:
        ConfigError: The source folder is missing for a new shape, or not a model
            ancre can represent.
    """
    folder = hf_folder(config.model.init_from)
    if folder is None:
        return config
    if not (folder / "config.json").is_file():
        if config.model.preset is None and all(
            getattr(config.model, key) is not None for key in SHAPE_KEYS
        ):
            return config  # a saved config: the source was read when the run started
        raise ConfigError("model.init_from", f"{folder} has no config.json; give a local "
                          "Hugging Face Llama folder (download it first)")  # fmt: skip
    source = read_llama_config(folder)
    if "rope_theta" not in source and "rope_theta" in (source.get("rope_parameters") or {}):
        source["rope_theta"] = source["rope_parameters"]["rope_theta"]
    fields = {
        key: source.get(name) for key, name in SHAPE_KEYS.items() if source.get(name) is not None
    }
    model = dataclasses.replace(config.model, preset=None, **fields)
    data = config.data
    if data.tokenizer is None:
        found = next((folder / name for name in TOKENIZER_FILES if (folder / name).is_file()), None)
        if found is None:
            raise ConfigError("model.init_from", f"{folder} holds neither of {TOKENIZER_FILES}; "
                              "set data.tokenizer to the model's tokenizer")  # fmt: skip
        data = dataclasses.replace(data, tokenizer=str(found))
    return dataclasses.replace(config, model=model, data=data)
