"""The lm-eval wrapper: its log-likelihoods and generations against direct computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ancre.generate.decode import completion_text, generate_tokens
from ancre.generate.sampler import Sampling
from tests.helpers.conversions import tiny_model

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from ancre.tasks import TaskError, parse_tasks  # noqa: E402
from ancre.tasks.harness import AncreLM, task_manager  # noqa: E402

PAIRS = [
    ("The weather in", " the north"),
    ("Once upon a time there was a", " small village by the sea"),
    ("", "Hello"),
    ("A recipe for", " soup"),
    ("Match report: the", " home side won"),
]


def request(kind: str, args: tuple, n: int = 0) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=args, idx=n)


@pytest.fixture(scope="module")
def lm(sample_tokenizer) -> AncreLM:
    model, _ = tiny_model("ancre", sample_tokenizer.vocab_size)
    return AncreLM(model, sample_tokenizer, batch_size=2, progress=False)


def direct_loglikelihood(lm: AncreLM, context: str, continuation: str) -> tuple[float, bool]:
    tokenizer = lm.tokenizer_
    context_ids = tokenizer.encode_one(context) if context else [tokenizer.eos_id]
    whole = tokenizer.encode_one(context + continuation) if context else context_ids
    targets = whole[len(context_ids) :] if context else tokenizer.encode_one(continuation)
    tokens = (whole if context else context_ids) + ([] if context else targets)
    with torch.no_grad():
        logprobs = F.log_softmax(lm.model(torch.tensor([tokens[:-1]]))[0], dim=-1)  # (T, V)
    at = range(len(tokens) - 1 - len(targets), len(tokens) - 1)
    picked = logprobs[list(at)]  # (C, V)
    wanted = torch.tensor(targets)
    return float(picked[torch.arange(len(targets)), wanted].sum()), bool(
        (picked.argmax(-1) == wanted).all()
    )


def test_loglikelihoods_equal_a_direct_computation(lm):
    got = lm.loglikelihood([request("loglikelihood", p, n) for n, p in enumerate(PAIRS)])
    for (context, continuation), (logprob, greedy) in zip(PAIRS, got, strict=True):
        expected, expected_greedy = direct_loglikelihood(lm, context, continuation)
        assert logprob == pytest.approx(expected, abs=1e-4)
        assert greedy == expected_greedy
        assert logprob < 0


def test_rolling_loglikelihood_of_a_short_text_is_its_tokens_after_eos(lm):
    text = "Once upon a time there was a small village."
    (total,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", (text,))])
    assert total == pytest.approx(direct_loglikelihood(lm, "", text)[0], abs=1e-4)


def test_rolling_windows_cover_a_text_longer_than_the_model_reads(lm):
    text = " ".join(["the weather in the north was cold and wet"] * 12)
    tokens = lm.tok_encode(text)
    assert len(tokens) > lm.max_length
    (total,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", (text,))])
    first_window = direct_loglikelihood(lm, "", lm.tokenizer_.decode(tokens[: lm.max_length]))[0]
    assert total < first_window < 0  # later windows add their tokens' log-probabilities


def test_greedy_generation_stops_before_the_stop_string(lm):
    context = "The weather in"
    prompt = lm.tok_encode(context)
    tokens = generate_tokens(lm.model, [prompt], 12, Sampling(0.0), lm.eot_token_id)[0]
    full = completion_text(lm.tokenizer_, prompt, tokens)
    stop = full[len(full) // 2 :][:2]  # two characters from the second half
    settings = {"until": [stop], "max_gen_toks": 12}
    (text, unbounded) = lm.generate_until(
        [request("generate_until", (context, settings)),
         request("generate_until", (context, {"until": [], "max_gen_toks": 12}), 1)]
    )  # fmt: skip
    assert unbounded == full
    assert text == full.split(stop)[0] and stop not in text


def test_bad_task_lists_and_folders_are_named(tmp_path):
    with pytest.raises(TaskError, match="names no task"):
        parse_tasks(" , ")
    assert parse_tasks("hellaswag, arc_easy") == ["hellaswag", "arc_easy"]
    with pytest.raises(TaskError, match="no such folder"):
        task_manager(["local"], tmp_path / "missing")
