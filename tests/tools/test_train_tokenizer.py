import subprocess
import sys

from ancre.data.tokenizer import Tokenizer
from tests.conftest import REPO, SAMPLE

SCRIPT = str(REPO / "tools" / "train_tokenizer.py")


def train(out, seed: int, env, max_chars: int = 400_000, model: str = "unigram") -> bytes:
    settings = ["--vocab-size", "600", "--seed", str(seed), "--max-chars", str(max_chars),
                "--model-type", model]  # fmt: skip
    command = [sys.executable, SCRIPT, "--data", str(SAMPLE), "--out", str(out), *settings]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert "600 pieces" in result.stdout and "4 shard(s)" in result.stdout, result.stdout
    return out.read_bytes()


def test_same_seed_same_bytes_other_seed_other_sample(tmp_path, subprocess_env):
    first = train(tmp_path / "a.model", 1, subprocess_env)
    assert train(tmp_path / "b.model", 1, subprocess_env) == first
    assert train(tmp_path / "c.model", 2, subprocess_env) != first  # another shard first
    tokenizer = Tokenizer(tmp_path / "a.model")
    text = "Match report:\n  Hollin Athletic\tlost 5-1."
    assert tokenizer.decode(tokenizer.encode_one(text)) == text


def test_missing_data_is_named(tmp_path, subprocess_env):
    command = [sys.executable, SCRIPT, "--data", str(tmp_path / "none"), "--out",
               str(tmp_path / "x.model")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env)
    assert result.returncode != 0 and "does not exist" in result.stderr


def test_a_byte_level_bpe_is_written_as_a_tokenizers_json(tmp_path, subprocess_env):
    first = train(tmp_path / "tokenizer.json", 1, subprocess_env, model="byte_bpe")
    assert train(tmp_path / "again.json", 1, subprocess_env, model="byte_bpe") == first
    tokenizer = Tokenizer(tmp_path / "tokenizer.json")
    assert tokenizer.kind == "tokenizers" and tokenizer.eos_token == "<|endoftext|>"
    text = "Match report:\n  Hollin Athletic\tlost 5-1."
    assert tokenizer.decode(tokenizer.encode_one(text)) == text
