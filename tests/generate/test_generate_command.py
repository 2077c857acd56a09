"""`ancre generate` on a conversion: a batch of prompts, streaming, and bad input."""

from __future__ import annotations

import subprocess

import pytest
import torch

from ancre.generate.commands import encode_prompt
from ancre.generate.decode import completion_text, generate_tokens
from ancre.generate.sampler import Sampling
from tests.helpers.conversions import tiny_model, write_conversion
from tests.helpers.training import cli_error, run_ancre

pytestmark = pytest.mark.slow


def ancre_generate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_ancre("generate", *args, env=env)


@pytest.fixture(scope="module")
def conversion(tmp_path_factory, sample_tokenizer):
    model, config = tiny_model("fixed", sample_tokenizer.vocab_size)
    folder = write_conversion(model, config, sample_tokenizer.path, tmp_path_factory.mktemp("c"))
    return folder, model


def test_a_file_of_prompts_is_continued_in_one_batch(conversion, sample_tokenizer, tmp_path,
                                                     subprocess_env):  # fmt: skip
    folder, model = conversion
    prompts = ["The weather in", "Once upon a time there was"]
    (tmp_path / "prompts.txt").write_text("\n".join([prompts[0], "", prompts[1]]) + "\n")
    greedy = ["--temperature", "0", "--max-new-tokens", "10"]
    result = ancre_generate(str(folder), "--prompts", str(tmp_path / "prompts.txt"), *greedy,
                            env=subprocess_env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ids = [encode_prompt(sample_tokenizer, p) for p in prompts]
    new = generate_tokens(model, ids, 10, Sampling(0.0), sample_tokenizer.eos_id)
    expected = "".join(
        f"--- prompt {n}\n{p}{completion_text(sample_tokenizer, i, t)}\n"
        for n, (p, i, t) in enumerate(zip(prompts, ids, new, strict=True), start=1)
    )
    assert result.stdout == expected
    assert f"{sum(map(len, new))} new tokens for 2 prompt(s)" in result.stderr
    streamed = ancre_generate(str(folder), "--prompt", prompts[0], *greedy, env=subprocess_env)
    first = completion_text(sample_tokenizer, ids[0], new[0])
    assert streamed.stdout == f"{prompts[0]}{first}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "x", "--max-new-tokens", "0"], "--max-new-tokens is 0"),
        (["--prompt", "x", "--top-p", "0"], "top_p is 0.0"),
        (["--prompt", "x", "--max-new-tokens", "100"], "max_seq_len of 48"),
    ],
)
def test_bad_input_is_named_with_exit_code_2(conversion, args, message, subprocess_env):
    result = ancre_generate(str(conversion[0]), *args, env=subprocess_env)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "x", "--device", "tpu9"], "--device 'tpu9' is not a device torch knows"),
        (["--prompts", "."], "is a folder; give a text file"),
        pytest.param(
            ["--prompt", "x", "--device", "cuda"], "this machine has no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here"),
        ),
    ],
)  # fmt: skip
def test_bad_devices_and_prompt_files_are_one_line_errors(conversion, args, message, capsys):
    assert message in cli_error(capsys, "generate", str(conversion[0]), *args)


def test_a_folder_that_is_no_model_is_named(tmp_path, subprocess_env):
    result = ancre_generate(str(tmp_path), "--prompt", "x", env=subprocess_env)
    assert result.returncode == 2
    assert "neither a training checkpoint" in result.stderr
