"""``ancre convert --format hf``: a folder that Hugging Face transformers loads.

The folder holds ``config.json`` (the shape and the topology: kind, temperature, fixed
edges; learned logits are a weight), ``model.safetensors`` (the weights under ancre's
own parameter names), the modeling code (``modeling_ancre.py``,
``configuration_ancre.py``: torch and transformers only, copied from
``ancre/export/remote/``), the tokenizer (``tokenizer.model`` or ``tokenizer.json``)
with ``tokenizer_config.json`` for ``AutoTokenizer``, ``generation_config.json`` and a
model card (``README.md``).
docs/export.md describes it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ancre.config import ConfigError
from ancre.export.card import write_card
from ancre.export.output import check_output_folder, write_export_marker
from ancre.model.topology import KINDS, FixedTopology, Topology
from ancre.run_folder import EXPORT_MARKER
from ancre.train.trained import TrainedModel, load_trained

REMOTE = Path(__file__).parent / "remote"
CODE = ("configuration_ancre.py", "modeling_ancre.py", "zoo_ancre.py")
WRITTEN = (
    EXPORT_MARKER, "config.json", "generation_config.json", "model.safetensors",
    "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "README.md", *CODE,
)  # fmt: skip
"""What an export writes: an output folder holding only these is replaced."""
EXPORTABLE = tuple(name for name, kind in KINDS.items() if kind.exportable)
"""The topology kinds the exported modeling code computes (a frozen Ancre goes as fixed)."""
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TORCH_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16"}


def export_hf(source: Path, out_dir: Path, dtype: str = "fp32") -> Path:
    """Writes a transformers folder for a checkpoint (any ZeRO stage) or a conversion.

    Args:
        source: A checkpoint folder or an ``ancre convert`` folder.
        out_dir: Where to write; created if missing.
        dtype: ``fp32`` or ``bf16`` for the weights (the topology logits stay fp32).

    Returns:
        ``out_dir``.

    Raises:
        FileExistsError: ``out_dir`` is inside the source, or holds other files.
        FileNotFoundError: The source is neither a checkpoint nor a conversion.
        CheckpointError: The checkpoint does not verify.
        ConfigError: The model's topology kind is one the exported code does not compute.
        ValueError: An unknown dtype.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    check_output_folder(source, out_dir, WRITTEN, "export")
    trained = load_trained(source)
    kind = trained.config.topology.kind
    if kind not in EXPORTABLE:
        raise ConfigError(
            "topology.kind",
            f"is {kind} in {source}; the exported modeling code computes "
            f"{', '.join(EXPORTABLE)} only. ancre convert (safetensors) and ancre generate "
            "read this model",
        )
    if trained.config.topology.fractions > 1:
        raise ConfigError(
            "topology.fractions",
            f"is {trained.config.topology.fractions} in {source}; the exported modeling code "
            "computes hyper-connections over whole streams, not Frac-Connections. ancre "
            "convert (safetensors) and ancre generate read this model",
        )
    if kind == "attnres" and trained.config.topology.form == "delta":
        raise ConfigError(
            "topology.form",
            f"is delta in {source}; the exported modeling code computes attnres in the "
            "additive and gated forms. ancre convert (safetensors) and ancre generate read "
            "this model",
        )
    model = trained.config.model
    for key, value in (("laurel", model.laurel), ("value_residual", model.value_residual)):
        if value not in ("none", False):
            raise ConfigError(
                f"model.{key}",
                f"is {value} in {source}; the exported modeling code computes the plain "
                "Llama block. ancre convert (safetensors) and ancre generate read this model",
            )
    frozen = frozen_edges(trained.model.topology)
    weights = {
        name: (t if name.startswith("topology.") else t.to(DTYPES[dtype])).contiguous()
        for name, t in trained.model.state_dict().items()
        if frozen is None or not name.startswith("topology.")  # frozen: its edges say all
    }
    if kind == "denseformer":  # which (depth, source) pair each alpha weighs
        topology = trained.model.topology
        weights["topology.rows"] = topology.rows.clone()
        weights["topology.cols"] = topology.cols.clone()
    write_export_marker(out_dir, "export", source, WRITTEN)
    metadata = {"format": "pt", "exported_by": "ancre", "step": str(trained.step)}
    save_file(weights, str(out_dir / "model.safetensors"), metadata=metadata)
    for name in CODE:
        shutil.copyfile(REMOTE / name, out_dir / name)
    # transformers reads a sentencepiece model as tokenizer.model, a tokenizers JSON as
    # tokenizer.json (the run keeps either as its tokenizer.model)
    name = "tokenizer.json" if trained.tokenizer.kind == "tokenizers" else "tokenizer.model"
    shutil.copyfile(trained.tokenizer.path, out_dir / name)
    tokens = trained.tokenizer.special_tokens()
    _write_json(out_dir / "config.json", hf_config(trained, tokens, dtype, frozen))
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config(trained, tokens))
    _write_json(out_dir / "special_tokens_map.json", {k: v[0] for k, v in tokens.items()})
    _write_json(
        out_dir / "generation_config.json",
        {
            "bos_token_id": tokens["bos_token"][1] if "bos_token" in tokens else None,
            "eos_token_id": tokens["eos_token"][1],
            "pad_token_id": tokens["pad_token"][1],
        },
    )
    write_card(trained, card_matrix(trained), out_dir / "README.md")
    return out_dir


PROBE_TOKENS = 64
"""Tokens of the probe an input-dependent wiring's card matrix is averaged over."""


def card_matrix(trained: TrainedModel) -> list[list[float]]:
    """The connection matrix for the model card.

    Exact for a static wiring; for a dynamic one, its mean over a probe of the first
    ``PROBE_TOKENS`` token ids (fewer when the vocabulary or the rotary tables are shorter).
    """
    topology, shape = trained.model.topology, trained.model.shape
    if getattr(topology, "dynamic", False):
        count = min(PROBE_TOKENS, shape.vocab_size, shape.max_seq_len)
        tokens = torch.arange(count).unsqueeze(0)  # (1, T)
        with topology.recording(), torch.no_grad():
            trained.model(tokens)
    return topology.matrix().tolist()


def frozen_edges(topology: Topology) -> list[tuple[int, int, float]] | None:
    """A frozen (and pruned) Ancre matrix as fixed edges i:j@w, or None when not frozen.

    Edge i:j adds h_i to block j-1's output with weight W[j-1, i] (``topology.edges``),
    W the mix weights of the topology's form (``ancre.model.topology.forms``: P itself in the
    additive form, P - E in the replace form, g_j P[j] in the gated form), so the
    fixed wiring in the additive form computes exactly the frozen model.
    """
    wiring = getattr(topology, "wiring", None)  # a FrozenWiring once frozen
    if wiring is None:
        return None
    values = wiring.values.detach().double().cpu()  # W of the mixed states, row after row
    gates = None if topology.gates is None else topology.gates.detach().double().cpu()
    edges = []
    for j, row in enumerate(wiring.mixed or wiring.edges):
        scale = float(gates[j]) if gates is not None and wiring.form == "gated" else 1.0
        weights = values[wiring.offsets[j] : wiring.offsets[j + 1]]
        edges += [(i, j + 1, float(w) * scale) for i, w in zip(row, weights.tolist(), strict=True)]
    return edges


def hf_config(
    trained: TrainedModel,
    tokens: dict[str, tuple[str, int]],
    dtype: str,
    frozen: list[tuple[int, int, float]] | None,
) -> dict[str, Any]:
    """config.json: the shape, the topology and the special token ids.

    ``frozen`` is :func:`frozen_edges` of the model: a frozen Ancre goes as kind fixed
    in the additive form (its edges carry the form's weights).
    """
    shape, topology = trained.model.shape, trained.model.topology
    edges = topology.edges if isinstance(topology, FixedTopology) else None
    kind = trained.config.topology.kind
    if frozen is not None:
        kind, edges = "fixed", frozen
    return {
        "architectures": ["AncreForCausalLM"],
        "model_type": "ancre",
        "auto_map": {
            "AutoConfig": "configuration_ancre.AncreLMConfig",
            "AutoModelForCausalLM": "modeling_ancre.AncreForCausalLM",
        },
        "vocab_size": shape.vocab_size,
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads,
        "num_key_value_heads": shape.num_kv_heads,
        "max_position_embeddings": shape.max_seq_len,
        "rotary_base": shape.rope_theta,
        "rms_norm_eps": shape.norm_eps,
        "initializer_range": shape.init_std,
        "topology_kind": kind,
        "topology_form": "additive" if frozen is not None else topology.form,
        "topology_temperature": None if frozen is not None else topology.temperature,
        "topology_edges": [list(edge) for edge in edges] if edges is not None else None,
        "topology_dwa_entries": int(topology.alpha.numel()) if kind == "denseformer" else None,
        "topology_streams": trained.config.topology.streams,
        "topology_dynamic": trained.config.topology.dynamic,
        "topology_sinkhorn_iters": trained.config.topology.sinkhorn_iters,
        "topology_attnres_group": getattr(topology, "group", 1),
        "use_cache": True,
        "tie_word_embeddings": False,
        "bos_token_id": tokens["bos_token"][1] if "bos_token" in tokens else None,
        "eos_token_id": tokens["eos_token"][1],
        "pad_token_id": tokens["pad_token"][1],
        "dtype": TORCH_DTYPE_NAMES[dtype],
    }


def tokenizer_config(trained: TrainedModel, tokens: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """tokenizer_config.json, for transformers' generic tokenizer backend.

    It builds the tokenizer from tokenizer.model (sentencepiece) or reads tokenizer.json.

    No BOS or EOS is added to encoded text, as in training (documents joined by EOS).
    """
    return {
        "tokenizer_class": "TokenizersBackend",
        **{name: piece for name, (piece, _) in tokens.items()},
        "add_bos_token": False,
        "add_eos_token": False,
        "padding_side": "left",
        "clean_up_tokenization_spaces": False,
        "model_max_length": trained.model.shape.max_seq_len,
    }


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
