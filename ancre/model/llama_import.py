"""A stock Llama checkpoint's weights on ancre's blocks, and which wirings start as it.

``model.init_from: hf:FOLDER`` (``ancre.config.hf_source`` fills the shape and the
tokenizer) reads the folder's safetensors, one file or shards with their
``model.safetensors.index.json`` (never a pickle), and renames each tensor to ancre's
parameter (:func:`ancre_name`). ancre's rotary embedding rotates the two halves of
each head as transformers' Llama does, so no weight is permuted; grouped-query
attention maps onto ``model.num_kv_heads``. Tied embeddings (no ``lm_head.weight``, or
``tie_word_embeddings``) become an untied head that starts as a copy of the embeddings.

The topology's own parameters are not in the source: they start where the kind starts.
A kind imports only where that start computes the plain residual network, so that the
imported model's logits at step 0 are the source's (:func:`preserving_start`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ancre.config import AncreConfig, ConfigError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
RENAMES = (
    (r"^model\.embed_tokens\.weight$", "embed.weight"),
    (r"^model\.norm\.weight$", "norm.weight"),
    (r"^lm_head\.weight$", "head.weight"),
    (r"^model\.layers\.(\d+)\.input_layernorm\.weight$", r"blocks.\1.attn_norm.weight"),
    (r"^model\.layers\.(\d+)\.post_attention_layernorm\.weight$", r"blocks.\1.mlp_norm.weight"),
    (r"^model\.layers\.(\d+)\.self_attn\.([qkvo])_proj\.weight$", r"blocks.\1.attn.w\2.weight"),
    (r"^model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight$", r"blocks.\1.mlp.\2.weight"),
)
"""transformers' LlamaForCausalLM names -> ancre's (``ancre.model.Transformer``)."""
IGNORED = re.compile(r"rotary_emb\.inv_freq$")
"""Buffers some exports carry that ancre recomputes."""
SHARED_INPUT_NORM = re.compile(r"^blocks\.(\d+)\.(key|value)_norm\.weight$")
"""The key and value norms of a multiway block (``topology.kind: mudd``): a Llama block
has one input norm, which they start as (so the block computes the source's)."""


def with_shared_input_norms(
    weights: dict[str, torch.Tensor], names: list[str]
) -> dict[str, torch.Tensor]:
    """``weights`` with every key and value norm among ``names`` a copy of its attention norm."""
    shared = dict(weights)
    for name in names:
        if (match := SHARED_INPUT_NORM.match(name)) is not None:
            shared[name] = weights[f"blocks.{match.group(1)}.attn_norm.weight"].clone()
    return shared


def ancre_name(name: str) -> str | None:
    """The ancre parameter of a transformers Llama tensor name (None: not a Llama weight)."""
    for pattern, replacement in RENAMES:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name)
    return None


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a folder: the shards its index names, or the one file.

    Raises:
        ConfigError: Naming ``model.init_from``: no safetensors (a pickle-only folder is
            refused: loading one would run its code), or a shard the index names is missing.
    """
    if (folder / INDEX).is_file():
        shards = sorted(set(json.loads((folder / INDEX).read_text())["weight_map"].values()))
        missing = [name for name in shards if not (folder / name).is_file()]
        if missing:
            raise ConfigError("model.init_from", f"{folder / INDEX} names missing shards "
                              f"{missing}; download them")  # fmt: skip
        return [folder / name for name in shards]
    if (folder / SINGLE).is_file():
        return [folder / SINGLE]
    raise ConfigError("model.init_from", f"{folder} has no {SINGLE} or {INDEX}; ancre reads "
                      "safetensors only (convert pytorch_model.bin with transformers' "
                      "save_pretrained(..., safe_serialization=True))")  # fmt: skip


def _tensors(folder: Path) -> Iterator[tuple[str, str, Any]]:
    """(ancre's name, the file's name, the open file) of every weight of the folder.

    Raises:
        ConfigError: A tensor that is not a Llama weight ancre knows (naming it).
    """
    for path in weight_files(folder):
        with safe_open(str(path), framework="pt", device="cpu") as opened:
            for name in opened.keys():  # noqa: SIM118 (safe_open is not a dict)
                if IGNORED.search(name):
                    continue
                target = ancre_name(name)
                if target is None:
                    raise ConfigError("model.init_from", f"{path}: tensor {name!r} is not a "
                                      "LlamaForCausalLM weight ancre maps")  # fmt: skip
                yield target, name, opened


def llama_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every weight of the folder under ancre's names, fp32 (the head untied).

    Raises:
        ConfigError: A tensor that is not a Llama weight ancre knows (naming it).
    """
    weights = {target: opened.get_tensor(name).float() for target, name, opened in _tensors(folder)}
    if "head.weight" not in weights:  # tied embeddings: the head starts as their copy
        weights["head.weight"] = weights["embed.weight"].clone()
    return weights


def kept_at_start(name: str) -> bool:
    """Whether a parameter is one no Llama checkpoint holds, which keeps its own start.

    The topology's, and LAuReL's (``model.laurel``, which starts as the plain residual).
    """
    return name.startswith("topology.") or any(
        f".{part}_residual." in name for part in ("attn", "mlp")
    )


def check_llama_fit(folder: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """Checks the folder's tensors against the model's shapes, from the files' headers.

    Args:
        folder: The source folder.
        expected: The model's parameter name -> shape; those :func:`kept_at_start` names
            are not imported, so only they may be missing.

    Raises:
        ConfigError: Naming ``model.init_from``: a tensor ancre does not map, one of the
            wrong shape, or a weight of the model the folder lacks.
    """
    found = {
        target: tuple(opened.get_slice(name).get_shape())
        for target, name, opened in _tensors(folder)
    }  # fmt: skip
    found.setdefault("head.weight", found.get("embed.weight", ()))  # tied embeddings
    wrong = [f"{n}: {found[n]} in the source, {s} here" for n, s in expected.items()
             if n in found and found[n] != s]  # fmt: skip
    missing = [n for n in expected if n not in found and not kept_at_start(n)
               and not SHARED_INPUT_NORM.match(n)]  # fmt: skip
    if wrong or missing:
        raise ConfigError("model.init_from", f"{folder} does not fit the model: "
                          + "; ".join(wrong + [f"{n} missing" for n in missing]))  # fmt: skip


def preserving_start(config: AncreConfig) -> str | None:
    """Why the configured wiring would not start as the plain residual network (None: it does).

    Cascaded does. Ancre, uniform and fixed do in the gated form (h_{j+1} = y_j + g_j sum_i
    P[j, i] h_i with every g_j = 0 at step 0). DenseFormer's averages start as the
    identity. Hyper-connections and mHC do not exactly: their n streams start equal to
    the plain stream and are summed before the final RMSNorm, which gives the plain
    network's function only up to the norm's epsilon (n h against h: 4e-3 in the logits
    of a small random model, tests/model/test_llama_import.py). AttnRes does in its gated
    form (its depth attention enters through gates at 0). MUDD does: every mix starts
    one-hot on the newest output, and the key and value norms start as the source's
    input norm (:func:`with_shared_input_norms`). Frac-Connections (``hyper`` with
    ``topology.fractions``) do: one stream, its widths and depths the identity at step 0.
    """
    if config.model.value_residual:
        return (
            "model.value_residual mixes the first block's values into every later block's "
            "from step 0 (l1 = l2 = 0.5); train without it from a stock Llama"
        )
    topology = config.topology
    if topology.kind in ("ancre", "uniform", "fixed") and topology.form != "gated":
        return (f"topology.kind={topology.kind} in the {topology.form} form adds earlier "
                "states from step 0; set topology.form=gated (every gate starts at 0)")  # fmt: skip
    if topology.kind in ("hyper", "mhc") and topology.fractions == 1:
        return (f"topology.kind={topology.kind} sums its streams before the final RMSNorm, "
                "equal to the plain network only up to the norm's epsilon; import into "
                "cascaded, denseformer, or ancre/uniform/fixed with "
                "topology.form=gated")  # fmt: skip
    if topology.kind == "attnres" and topology.form != "gated":
        return ("topology.kind=attnres reads a softmax average of every earlier update from "
                "step 0; set topology.form=gated (h_{j+1} = y_j + g_j (AttnRes_j - y_j), "
                "every gate 0 at step 0)")  # fmt: skip
    return None
