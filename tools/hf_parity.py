"""Largest logit difference between ancre and its Hugging Face export, per topology kind.

Without ``--source``, one tiny model per topology kind (random weights; Ancre's logits
drawn from N(0, 1) at temperature 0.5 so its rows are far from uniform; fixed edges
0:2, 1:3@0.5, 2:4) is written as a conversion, exported with ``ancre convert --format
hf``'s writer, loaded back with ``transformers.AutoModelForCausalLM`` and run on the
same random tokens (fp32, CPU) as ancre's own model. With ``--source`` the same is done
for one checkpoint or conversion. Needs transformers.

    python tools/hf_parity.py [--source runs/quickstart/checkpoints/step_00000200]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from ancre.config import load_config, save_config
from ancre.data.sources import find_shards, iter_documents
from ancre.data.tokenizer import Tokenizer, train_tokenizer
from ancre.export.hf import export_hf
from ancre.model import build_model
from ancre.pretrained import PRETRAINED_FORMAT, WEIGHTS
from ancre.train.trained import load_trained

KINDS = ("cascaded", "ancre", "uniform", "fixed", "denseformer", "hyper", "mhc", "attnres")
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def tiny_conversion(kind: str, tokenizer: Tokenizer, folder: Path) -> Path:
    """A random tiny model of one topology kind, written as ``ancre convert`` writes it."""
    config = load_config(
        Path(__file__).resolve().parents[1] / "configs/quickstart.yaml",
        [f"topology.kind={kind}", "topology.temperature=0.5", "topology.edges=0:2,1:3@0.5,2:4",
         "data.seq_len=128", "topology.backend=reference",
         *(["topology.dynamic=true"] if kind in ("hyper", "mhc") else [])],
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config, tokenizer.vocab_size)
    with torch.no_grad():
        if kind == "ancre":
            model.topology.logits.normal_(0.0, 1.0)
        if kind == "denseformer":  # averages away from the identity
            model.topology.alpha.add_(0.3 * torch.randn_like(model.topology.alpha))
        if kind in ("hyper", "mhc", "attnres"):  # every weight away from its start
            for parameter in model.topology.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
    folder.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS),
        metadata={"format": PRETRAINED_FORMAT},
    )  # fmt: skip
    save_config(config, folder / "config.yaml")
    (folder / "tokenizer.model").write_bytes(tokenizer.path.read_bytes())
    return folder


def difference(source: Path, work: Path, rows: int) -> tuple[float, float]:
    """(largest |ancre - transformers| logit, largest |logit|) on random tokens."""
    ancre_model = load_trained(source).model
    exported = export_hf(source, work / "hf")
    hf_model = AutoModelForCausalLM.from_pretrained(exported, trust_remote_code=True).eval()
    shape = ancre_model.shape
    tokens = torch.randint(0, shape.vocab_size, (rows, shape.max_seq_len),
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    with torch.no_grad():
        ours = ancre_model(tokens)  # (B, T, V)
        theirs = hf_model(tokens).logits  # (B, T, V)
    return float((ours - theirs).abs().max()), float(ours.abs().max())


def main() -> None:
    """Prints one line per topology kind (or for the source)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="a checkpoint or conversion folder")
    parser.add_argument("--rows", type=int, default=4, help="sequences of max_seq_len tokens")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.source is not None:
            diff, scale = difference(args.source, work, args.rows)
            print(f"{args.source}: max |logit difference| {diff:.3g} (max |logit| {scale:.3g})")
            return
        texts = iter_documents(find_shards(str(SAMPLE), "train"), "text", Counter())
        tokenizer = train_tokenizer(texts, work / "sample.model", vocab_size=512)
        print(f"fp32, CPU, {args.rows} random sequences of 128 tokens, vocabulary 512")
        for kind in KINDS:
            source = tiny_conversion(kind, tokenizer, work / kind / "ancre")
            diff, scale = difference(source, work / kind, args.rows)
            print(f"{kind:>9}: max |logit difference| {diff:.3g} (max |logit| {scale:.3g})")


if __name__ == "__main__":
    main()
