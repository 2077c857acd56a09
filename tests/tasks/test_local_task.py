"""`ancre eval --tasks` on a local task whose answers the model is built to know."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from ancre.data.tokenizer import Tokenizer
from tests.helpers.conversions import tiny_model, write_conversion
from tests.helpers.local_task import TASK, single_piece_words, task_env, write_task

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.slow

CERTAIN_LOGIT = 30.0


def bigram_model(tokenizer: Tokenizer, follows: dict[int, int]):
    """A model certain that token b follows token a for every (a, b) of ``follows``.

    Every block adds nothing (zero output projections), so h_L is a positive multiple
    of the embedding of the last token whatever the topology; each a embeds as a unit
    vector e_k, and the head gives b a logit of 30 along e_k and every token 0 else.
    """
    model, config = tiny_model("ancre", tokenizer.vocab_size)
    width = model.shape.hidden_size
    with torch.no_grad():
        for block in model.blocks:
            block.attn.wo.weight.zero_()
            block.mlp.down.weight.zero_()
        model.head.weight.zero_()
        for k, (a, b) in enumerate(follows.items()):
            model.embed.weight[a] = torch.nn.functional.one_hot(torch.tensor(k), width).float()
            model.head.weight[b, k] = CERTAIN_LOGIT / width**0.5  # norm(e_k) = sqrt(D) e_k
    return model, config


def test_accuracy_is_the_share_of_documents_whose_answer_the_model_knows(
    tmp_path, sample_tokenizer, subprocess_env
):
    words = single_piece_words(sample_tokenizer, 16)
    contexts, answers = words[:8], words[8:]
    follows = {a: b for (_, a), (_, b) in zip(contexts, answers, strict=True)}
    model, config = bigram_model(sample_tokenizer, follows)
    conversion = write_conversion(model, config, sample_tokenizer.path, tmp_path / "bigram")
    docs, known = [], 0
    for k, ((context, _), (answer, _)) in enumerate(zip(contexts, answers, strict=True)):
        other = answers[(k + 1) % len(answers)][0]
        labelled_right = k % 3 != 2  # the label is the certain answer in 6 of 8 documents
        known += labelled_right
        choices = [other, answer] if k % 2 else [answer, other]
        label = choices.index(answer if labelled_right else other)
        docs.append({"context": context, "choices": choices, "label": label})
    tasks = write_task(tmp_path / "tasks", docs)
    result = subprocess.run(
        [sys.executable, "-m", "ancre.cli", "eval", str(conversion), "--tasks", TASK,
         "--tasks-path", str(tasks), "--batch-size", "3"],
        env=task_env(subprocess_env, tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["tasks"][TASK]["acc"] == pytest.approx(known / len(docs))
    written = json.loads((tmp_path / "bigram.tasks.json").read_text())
    assert written["metrics"][TASK]["acc"] == pytest.approx(known / len(docs))
    assert written["n_samples"][TASK]["effective"] == len(docs)
    assert "metrics_file" not in summary  # a conversion has no run folder
