"""The Hugging Face export, loaded by transformers in an interpreter where ancre is absent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from ancre.config import ConfigError
from ancre.export.hf import WRITTEN, export_hf
from ancre.generate.commands import encode_prompt
from ancre.generate.decode import generate_tokens
from ancre.generate.sampler import Sampling
from ancre.model import build_model
from ancre.train.trained import load_trained
from tests.helpers.conversions import KINDS, tiny_config, tiny_model, write_conversion

pytest.importorskip("transformers")

PROMPTS = ["The weather in", "Once upon a time there was", "A"]
NEW_TOKENS = 12

# Runs in a fresh interpreter; importing ancre there fails.
LOAD_WITH_TRANSFORMERS = """
import json, sys
sys.modules["ancre"] = None
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

request = json.loads(sys.argv[1])
results = {}
for kind, folder in request["folders"].items():
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(torch.tensor(request["tokens"])).logits
    batch = tokenizer(request["prompts"], padding=True, return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=request["new"], do_sample=False)
    results[kind] = {
        "logits": logits,
        "ids": [tokenizer(p)["input_ids"] for p in request["prompts"]],
        "new": out[:, batch["input_ids"].shape[1]:].tolist(),
        "eos": tokenizer.eos_token_id,
        "dtype": str(model.dtype),
    }
torch.save(results, request["out"])
loaded = sorted(m for m, module in sys.modules.items() if m.startswith("ancre") and module)
print("\\nancre modules:", loaded)
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory, sample_tokenizer, subprocess_env):
    """Every topology kind exported, and what transformers makes of each export."""
    root = tmp_path_factory.mktemp("hf")
    tokens = torch.randint(
        0, sample_tokenizer.vocab_size, (2, 40), generator=torch.Generator().manual_seed(3)
    )
    folders, models = {}, {}
    for kind in KINDS:
        model, config = tiny_model(kind, sample_tokenizer.vocab_size)
        conversion = write_conversion(model, config, sample_tokenizer.path, root / f"{kind}-ancre")
        folders[kind] = str(export_hf(conversion, root / f"{kind}-hf"))
        models[kind] = load_trained(conversion).model
    request = {"folders": folders, "tokens": tokens.tolist(), "prompts": PROMPTS,
               "new": NEW_TOKENS, "out": str(root / "results.pt")}  # fmt: skip
    env = {k: v for k, v in subprocess_env.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(root / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITH_TRANSFORMERS, json.dumps(request)],
        env=env, cwd=root, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == "ancre modules: []"
    return tokens, models, torch.load(root / "results.pt"), sample_tokenizer


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_transformers_logits_equal_ancre_s(exported, kind):
    tokens, models, results, _ = exported
    with torch.no_grad():
        ours = models[kind](tokens)  # (B, T, V)
    theirs = results[kind]["logits"]
    assert results[kind]["dtype"] == "torch.float32"
    assert theirs.shape == ours.shape
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_greedy_generate_gives_ancre_generate_s_tokens(exported, kind):
    _, models, results, tokenizer = exported
    prompts = [encode_prompt(tokenizer, p) for p in PROMPTS]
    assert results[kind]["ids"] == prompts  # AutoTokenizer encodes as ancre does
    ours = generate_tokens(models[kind], prompts, NEW_TOKENS, Sampling(0.0), tokenizer.eos_id)
    eos = results[kind]["eos"]
    theirs = [row[: row.index(eos)] if eos in row else row for row in results[kind]["new"]]
    assert theirs == ours


@pytest.mark.slow
def test_a_frozen_ancre_travels_as_its_fixed_edges(exported):
    _, models, _, _ = exported
    topology = models["ancre-frozen"].topology
    assert topology.wiring is not None  # the conversion (step 7) loaded frozen
    assert all(len(row) <= 2 for row in topology.wiring.edges)  # top-2 rows


def test_a_wiring_the_exported_code_does_not_compute_is_refused(tmp_path, sample_tokenizer):
    config = tiny_config("mudd")  # four mixes per block: the exported blocks read one state
    model = build_model(config, sample_tokenizer.vocab_size)
    conversion = write_conversion(model, config, sample_tokenizer.path, tmp_path / "conv")
    with pytest.raises(ConfigError, match="topology.kind: is mudd"):
        export_hf(conversion, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize(
    ("option", "error"),
    [("model.laurel=rw_lr", "model.laurel: is rw_lr"),
     ("model.value_residual=true", "model.value_residual: is True")],
)  # fmt: skip
def test_a_block_option_the_code_does_not_compute_is_refused_before_anything_is_written(
    tmp_path, sample_tokenizer, option, error
):
    config = tiny_config("ancre", option, "model.laurel_rank=4")
    model = build_model(config, sample_tokenizer.vocab_size)
    conversion = write_conversion(model, config, sample_tokenizer.path, tmp_path / "conv")
    with pytest.raises(ConfigError, match=error):
        export_hf(conversion, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_attnres_in_the_delta_form_is_refused_before_anything_is_written(
    tmp_path, sample_tokenizer
):
    config = tiny_config("attnres", "topology.form=delta")
    model = build_model(config, sample_tokenizer.vocab_size)
    conversion = write_conversion(model, config, sample_tokenizer.path, tmp_path / "conv")
    with pytest.raises(ConfigError, match="topology.form: is delta"):
        export_hf(conversion, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_frac_connections_are_refused_before_anything_is_written(tmp_path, sample_tokenizer):
    config = tiny_config("hyper", "topology.streams=1", "topology.fractions=2")
    model = build_model(config, sample_tokenizer.vocab_size)
    conversion = write_conversion(model, config, sample_tokenizer.path, tmp_path / "conv")
    with pytest.raises(ConfigError, match="topology.fractions: is 2"):
        export_hf(conversion, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_export_refuses_a_folder_holding_other_files(tmp_path, sample_tokenizer):
    model, config = tiny_model("ancre", sample_tokenizer.vocab_size)
    conversion = write_conversion(model, config, sample_tokenizer.path, tmp_path / "conv")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        export_hf(conversion, out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (out / "notes.txt").unlink()
    export_hf(conversion, out)
    sentencepiece = sorted(name for name in WRITTEN if name != "tokenizer.json")
    assert sorted(p.name for p in out.iterdir()) == sentencepiece
    export_hf(conversion, out)  # an earlier export is replaced
    card = (out / "README.md").read_text()
    assert (
        "topology | ancre, temperature 0.5" in card and "final validation loss | not known" in card
    )
    with pytest.raises(FileExistsError, match="inside"):
        export_hf(conversion, conversion / "hf")
    assert not (conversion / "hf").exists()


def test_an_export_never_replaces_the_users_files_of_the_same_names(tmp_path, sample_tokenizer):
    model, config = tiny_model("ancre", sample_tokenizer.vocab_size)
    conversion = write_conversion(model, config, sample_tokenizer.path, tmp_path / "conv")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    (out / "config.json").write_text('{"mine": true}')
    with pytest.raises(FileExistsError, match="no ancre convert wrote it.*README.md"):
        export_hf(conversion, out)
    assert (out / "README.md").read_text() == "my notes"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json"]
    fresh = export_hf(conversion, tmp_path / "fresh")
    marker = json.loads((fresh / "ancre-export.json").read_text())
    assert marker["what"] == "export" and "README.md" in marker["files"]
