"""model.init_from: hf:FOLDER: a randomly initialised transformers LlamaForCausalLM (grouped-
query attention, tied and untied embeddings) imported under every wiring that starts as
the plain network, with transformers' logits at step 0; then trained, generated from and
exported back (real transformers, real safetensors, real runs)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ancre.config import ConfigError, load_config
from ancre.model import build_model
from ancre.train.prepare import check_llama_source
from ancre.train.run import _init_weights
from tests.helpers.training import QUICKSTART, SAMPLE, records, run_ancre

transformers = pytest.importorskip("transformers")

PRESERVING = [("cascaded", "additive"), ("ancre", "gated"), ("uniform", "gated"),
              ("denseformer", "additive"), ("attnres", "gated"), ("mudd", "additive")]  # fmt: skip


def llama_folder(root, tokenizer_path, tied: bool):
    """A small random Llama (4 query heads over 2 key/value heads) saved as transformers does."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=50000.0,
        tie_word_embeddings=tied, max_position_embeddings=256,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    folder = root / ("tied" if tied else "untied")
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(tokenizer_path, folder / "tokenizer.model")
    return folder, model


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def source(request, tmp_path_factory, sample_tokenizer):
    assert sample_tokenizer.vocab_size == 512
    return llama_folder(tmp_path_factory.mktemp("llama"), sample_tokenizer.path, request.param)


def imported(folder, kind: str, form: str, *extra: str):
    config = load_config(QUICKSTART, [f"model.init_from=hf:{folder}", f"topology.kind={kind}",
                                      f"topology.form={form}", *extra])  # fmt: skip
    check_llama_source(config)
    model = build_model(config, 512).eval()
    _init_weights(model, config.model.init_from)
    return config, model


@pytest.mark.parametrize(("kind", "form"), PRESERVING)
def test_every_preserving_wiring_starts_with_the_source_logits(source, kind, form) -> None:
    folder, reference = source
    config, model = imported(folder, kind, form)
    assert config.model.preset is None and config.model.num_kv_heads == 2
    assert config.model.rope_theta == 50000.0 and config.model.norm_eps == 1e-5
    assert config.data.tokenizer == str(folder / "tokenizer.model")
    tokens = torch.randint(0, 512, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(tokens).logits
        got = model(tokens)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_frac_connections_start_with_the_source_logits(source) -> None:
    folder, reference = source
    fractions = ("topology.streams=1", "topology.fractions=4", "topology.dynamic=true")
    _, model = imported(folder, "hyper", "additive", *fractions)
    tokens = torch.randint(0, 512, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference(tokens).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", ["rw", "lr", "rw_lr"])
def test_laurel_blocks_start_with_the_source_logits(source, variant) -> None:
    folder, reference = source
    _, model = imported(folder, "ancre", "gated", f"model.laurel={variant}", "model.laurel_rank=4")
    tokens = torch.randint(0, 512, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference(tokens).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kind", "form", "error"),
    [
        ("ancre", "additive", "set topology.form=gated"),
        ("hyper", "additive", "only up to the norm's epsilon"),
        ("mhc", "additive", "only up to the norm's epsilon"),
        ("attnres", "additive", "set topology.form=gated"),
    ],
)
def test_a_wiring_that_cannot_start_as_the_source_is_refused(source, kind, form, error) -> None:
    with pytest.raises(ConfigError, match=error) as raised:
        imported(source[0], kind, form)
    assert str(raised.value).startswith("model.init_from: cannot start function-preserving")


def test_value_residual_cannot_start_as_the_source_and_is_refused(source) -> None:
    with pytest.raises(ConfigError, match="mixes the first block's values") as raised:
        imported(source[0], "ancre", "gated", "model.value_residual=true")
    assert str(raised.value).startswith("model.init_from: cannot start function-preserving")


def test_what_ancre_cannot_represent_is_refused_naming_it(tmp_path, sample_tokenizer) -> None:
    folder, _ = llama_folder(tmp_path, sample_tokenizer.path, tied=False)
    original = json.loads((folder / "config.json").read_text())
    for change, words in [
        ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}},
         "rope scaling"),
        ({"attention_bias": True}, "attention_bias is true"),
        ({"model_type": "mistral", "architectures": ["MistralForCausalLM"]},
         "not LlamaForCausalLM"),
    ]:  # fmt: skip
        (folder / "config.json").write_text(json.dumps({**original, **change}))
        with pytest.raises(ConfigError, match=words) as raised:
            load_config(QUICKSTART, [f"model.init_from=hf:{folder}"])
        assert str(raised.value).startswith("model.init_from:")
    (folder / "config.json").write_text(json.dumps(original))
    (folder / "model.safetensors").rename(folder / "elsewhere.safetensors")
    with pytest.raises(ConfigError, match="has no model.safetensors"):
        imported(folder, "cascaded", "additive")
    with pytest.raises(ConfigError, match="has no config.json"):
        load_config(QUICKSTART, [f"model.init_from=hf:{tmp_path / 'nowhere'}"])


@pytest.mark.slow
def test_an_import_trains_generates_and_exports_back(tmp_path, subprocess_env, sample_tokenizer):
    folder, _ = llama_folder(tmp_path, sample_tokenizer.path, tied=True)
    args = [
        str(QUICKSTART), f"model.init_from=hf:{folder}", "topology.kind=ancre",
        "topology.form=gated", f"data.path={SAMPLE}", f"run.out_dir={tmp_path}", "run.name=r",
        "train.steps=4", "train.warmup_steps=1", "data.seq_len=64", "train.micro_batch_size=4",
        "train.global_batch_size=4", "eval.every=0", "eval.tokens=512", "checkpoint.every=4",
        "train.log_every=1",
    ]  # fmt: skip
    result = run_ancre("train", *args, env=subprocess_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "initialised the weights from the Llama checkpoint" in result.stderr
    losses = [r["loss"] for r in records(tmp_path / "r") if "loss" in r]
    assert len(losses) == 4 and all(loss == loss for loss in losses)
    checkpoint = tmp_path / "r" / "checkpoints" / "step_00000004"
    generated = run_ancre("generate", str(checkpoint), "--prompt", "The", "--max-new-tokens", "8",
                          env=subprocess_env)  # fmt: skip
    assert generated.returncode == 0 and generated.stdout.strip(), generated.stderr[-2000:]
    exported = tmp_path / "hf"
    result = run_ancre("convert", str(checkpoint), str(exported), "--format", "hf",
                       env=subprocess_env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((exported / "config.json").read_text())["num_key_value_heads"] == 2
    from ancre.train.trained import load_trained

    ours = load_trained(checkpoint).model.eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        exported, trust_remote_code=True
    ).eval()  # fmt: skip
    tokens = torch.randint(0, 512, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(theirs(tokens).logits, ours(tokens), rtol=0, atol=1e-5)
