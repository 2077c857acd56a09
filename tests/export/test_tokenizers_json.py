"""A run on a Hugging Face tokenizers JSON, from training to transformers: nothing downloaded.

A byte-level BPE trained by a run (``data.tokenizer_model: byte_bpe``), then given to
another run as ``data.tokenizer``; that run is generated from, evaluated, and exported
with ``--format hf``, whose tokenizer.json and weights transformers loads.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from ancre.data.tokenizer import Tokenizer
from ancre.generate.commands import encode_prompt
from ancre.run_folder import checkpoint_of
from ancre.train.trained import load_trained
from tests.export.test_hf import LOAD_WITH_TRANSFORMERS, NEW_TOKENS, PROMPTS
from tests.helpers.training import run_ancre, train_args, train_run

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory, subprocess_env):
    out = tmp_path_factory.mktemp("tokenizers-json")
    own = train_args(out, "own", "null", "train.steps=2", "data.tokenizer_model=byte_bpe",
                     "data.tokenizer_vocab_size=600")  # fmt: skip
    train_run(*own, env=subprocess_env)
    given = out / "tokenizer.json"
    given.write_bytes((out / "own" / "tokenizer.model").read_bytes())
    train_run(*train_args(out, "given", str(given), "train.steps=4"), env=subprocess_env)
    return out, given


def test_a_run_trains_its_own_byte_level_bpe_and_another_reads_the_json(runs):
    out, given = runs
    assert Tokenizer(out / "own" / "tokenizer.model").kind == "tokenizers"
    assert Tokenizer(given).vocab_size == 600
    trained = load_trained(checkpoint_of(out / "given"))
    assert trained.tokenizer.kind == "tokenizers" and trained.step == 4


def test_generate_eval_and_the_hf_export_read_it(runs, subprocess_env, tmp_path):
    out, given = runs
    run_dir = out / "given"
    tokenizer = Tokenizer(given)
    generated = run_ancre("generate", str(run_dir), "--prompt", PROMPTS[0], "--temperature", "0",
                          "--max-new-tokens", "6", env=subprocess_env)  # fmt: skip
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert generated.stdout.startswith(PROMPTS[0])
    evaluated = run_ancre("eval", str(run_dir), "eval.tokens=512", env=subprocess_env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["val_loss"] > 0
    exported = run_ancre("convert", str(run_dir), str(tmp_path / "hf"), "--format", "hf",
                         env=subprocess_env)  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    folder = tmp_path / "hf"
    assert (folder / "tokenizer.json").read_bytes() == given.read_bytes()
    assert not (folder / "tokenizer.model").exists()
    tokens = torch.randint(
        0, tokenizer.vocab_size, (2, 20), generator=torch.Generator().manual_seed(0)
    )
    request = {"folders": {"run": str(folder)}, "tokens": tokens.tolist(), "prompts": PROMPTS,
               "new": NEW_TOKENS, "out": str(tmp_path / "results.pt")}  # fmt: skip
    env = {k: v for k, v in subprocess_env.items() if k != "PYTHONPATH"}
    env.update(
        HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_WITH_TRANSFORMERS, json.dumps(request)], env=env,
        cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    results = torch.load(tmp_path / "results.pt")["run"]
    assert results["ids"] == [encode_prompt(tokenizer, p) for p in PROMPTS]
    assert results["eos"] == tokenizer.eos_id
    model = load_trained(checkpoint_of(run_dir)).model
    with torch.no_grad():
        torch.testing.assert_close(results["logits"], model(tokens), rtol=0, atol=1e-5)
