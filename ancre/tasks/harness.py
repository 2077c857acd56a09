"""An ancre model as an lm-evaluation-harness LM, and the tasks run through it.

Log-likelihoods come from one forward pass per batch of requests (longest first, padded
on the right, which a causal model never reads); greedy generation uses the KV cache.
Shapes: B requests in a batch, T tokens, V vocabulary.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lm_eval import evaluator
from lm_eval.api.model import TemplateLM
from lm_eval.tasks import TaskManager
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from ancre.data.tokenizer import Tokenizer
from ancre.generate.decode import completion_text, generate_tokens
from ancre.generate.sampler import Sampling
from ancre.model import Transformer
from ancre.tasks import TaskError
from ancre.tasks.data_files import TaskDataError, check_data_files

logger = logging.getLogger(__name__)

Request = tuple[Any, list[int], list[int]]
"""(what the harness asked, context tokens, continuation tokens)."""


class AncreLM(TemplateLM):
    """A Transformer and its tokenizer, answering the harness's three kinds of request.

    Attributes:
        model: The model, in eval mode.
        tokenizer: Its tokenizer (no BOS: the harness conditions an empty
            context on EOS, the document separator of training).
        batch_size: Requests per forward pass.
        max_length: Longest sequence the model reads (``max_seq_len``).
        max_gen_toks: New tokens of a generation when the task does not say.
    """

    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        batch_size: int = 8,
        max_gen_toks: int = 256,
        progress: bool = True,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.tokenizer_ = tokenizer
        self.batch_size = batch_size
        self.max_length = model.shape.max_seq_len
        self.max_gen_toks = max_gen_toks
        self.progress = progress

    @property
    def eot_token_id(self) -> int:
        """The end-of-document token."""
        return self.tokenizer_.eos_id

    @property
    def tokenizer_name(self) -> str:
        """The tokenizer file (the harness keys its caches on it)."""
        return str(self.tokenizer_.path)

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kwargs
    ) -> list[int]:
        """Token ids of a text, as training tokenised it."""
        return self.tokenizer_.encode_one(string)

    @torch.no_grad()
    def _loglikelihood_tokens(
        self, requests: Sequence[Request], disable_tqdm: bool = False, **kwargs
    ) -> list[tuple[float, bool]]:
        """Sum of log p(continuation | context), and whether greedy decoding gives it."""
        device = self.model.embed.weight.device
        rows = []
        for _, context, continuation in requests:
            whole = (context + continuation)[-(self.max_length + 1) :]
            rows.append((whole[:-1], whole[-len(continuation) :] if continuation else []))
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        results: list[tuple[float, bool]] = [(0.0, True)] * len(rows)
        bar = tqdm(
            total=len(rows), desc="log-likelihoods", disable=disable_tqdm or not self.progress
        )
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            width = len(rows[chosen[0]][0])
            inputs = torch.zeros(len(chosen), width, dtype=torch.long)  # (B, T), padded right
            for b, i in enumerate(chosen):
                inputs[b, : len(rows[i][0])] = torch.tensor(rows[i][0])
            logprobs = F.log_softmax(self.model(inputs.to(device)).float(), dim=-1)  # (B, T, V)
            for b, i in enumerate(chosen):
                tokens, targets = rows[i]
                if not targets:
                    continue
                at = torch.arange(len(tokens) - len(targets), len(tokens), device=device)
                wanted = torch.tensor(targets, device=device)
                picked = logprobs[b, at]  # (C, V)
                results[i] = (
                    float(picked.gather(-1, wanted[:, None]).sum()),
                    bool((picked.argmax(dim=-1) == wanted).all()),
                )
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], results[i])
            bar.update(len(chosen))
        bar.close()
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole texts, in windows of ``max_length`` tokens."""
        windows: list[Request] = []
        owners: list[int] = []
        for n, request in enumerate(requests):
            tokens = self.tok_encode(request.args[0])
            for context, continuation in map(
                make_disjoint_window,
                get_rolling_token_windows(tokens, self.prefix_token_id, self.max_length, 1),
            ):
                windows.append((None, context, continuation))
                owners.append(n)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for n, (logprob, _) in zip(owners, scores, strict=True):
            totals[n] += logprob
        for request, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", (request.args[0],), total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Continues each context until one of its stop strings (greedy unless sampling)."""
        outputs: list[str] = [""] * len(requests)
        bar = tqdm(
            total=len(requests), desc="generations", disable=disable_tqdm or not self.progress
        )
        groups: dict[str, list[int]] = {}
        for n, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(
                n
            )
        for key, members in groups.items():
            settings = json.loads(key)
            until = settings.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            new_tokens = min(
                int(settings.get("max_gen_toks", self.max_gen_toks)), self.max_length - 1
            )
            sampling = Sampling(
                float(settings.get("temperature", 0.0)) if settings.get("do_sample") else 0.0
            )
            for start in range(0, len(members), self.batch_size):
                chosen = members[start : start + self.batch_size]
                contexts = [requests[n].args[0] for n in chosen]
                texts = self._generate(contexts, new_tokens, sampling, until)
                for n, text in zip(chosen, texts, strict=True):
                    outputs[n] = text
                    self.cache_hook.add_partial("generate_until", requests[n].args, text)
                bar.update(len(chosen))
        bar.close()
        return outputs

    def _generate(
        self, contexts: Sequence[str], new_tokens: int, sampling: Sampling, until: Sequence[str]
    ) -> list[str]:
        """One batch of continuations, each cut before its first stop string."""
        keep = self.max_length - new_tokens  # the context's last tokens that fit
        prompts = [(self.tok_encode(c) or [self.eot_token_id])[-keep:] for c in contexts]

        def stopped(new: list[list[int]]) -> list[bool]:
            texts = [
                completion_text(self.tokenizer_, p, t) for p, t in zip(prompts, new, strict=True)
            ]
            return [any(stop in text for stop in until) for text in texts]

        new = generate_tokens(
            self.model, prompts, new_tokens, sampling, self.eot_token_id,
            on_tokens=stopped if until else None,
        )  # fmt: skip
        texts = [completion_text(self.tokenizer_, p, t) for p, t in zip(prompts, new, strict=True)]
        for stop in until:
            texts = [text.split(stop)[0] for text in texts]
        return texts


def task_manager(names: Sequence[str], tasks_path: str | Path | None) -> TaskManager:
    """The task index for ``names`` (kept: a run checks its tasks, then uses them).

    A local folder's JSON data files are checked line by line each time
    (``ancre.tasks.data_files``).

    Raises:
        TaskError: A task is unknown, the tasks folder does not exist, or a local data
            file is missing or has a line that is not a JSON object (file and line named).
    """
    manager = _task_manager(tuple(names), None if tasks_path is None else str(tasks_path))
    if tasks_path is not None:
        try:
            check_data_files(Path(tasks_path))
        except TaskDataError as error:
            raise TaskError(str(error)) from None
    return manager


@functools.lru_cache(maxsize=4)
def _task_manager(names: tuple[str, ...], tasks_path: str | None) -> TaskManager:
    """The harness's task index: the local folder alone when it holds every task asked for.

    Indexing the harness's own tasks takes seconds to tens of seconds; local tasks need
    only their folder.

    Raises:
        TaskError: A task is unknown (the message lists close names).
    """
    if tasks_path is not None:
        if not Path(tasks_path).is_dir():
            raise TaskError(f"tasks path {tasks_path}: no such folder of task YAML files")
        local = TaskManager(include_path=str(tasks_path), include_defaults=False)
        if all(name in local.all_tasks for name in names):
            return local
    manager = TaskManager(include_path=str(tasks_path) if tasks_path else None)
    unknown = [name for name in names if name not in manager.all_tasks]
    if unknown:
        raise TaskError(
            f"unknown task(s) {', '.join(unknown)}; `lm-eval ls tasks` lists the harness's tasks, "
            "and a folder of task YAML files adds your own (--tasks-path, eval.tasks_path)"
        )
    return manager


def run_tasks(
    model: Transformer,
    tokenizer: Tokenizer,
    names: Sequence[str],
    tasks_path: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluates a model on tasks; the process's random states are left as they were.

    Args:
        model: The model (eval mode is set; the caller restores train mode).
        tokenizer: Its tokenizer.
        names: Task (or group) names of the harness or of ``tasks_path``.
        tasks_path: A folder of task YAML files, searched first.
        limit: At most this many documents per task.
        batch_size: Requests per forward pass.
        progress: Show progress bars.

    Returns:
        The harness's results (``results``, ``n-samples``, ``versions``, ...).

    Raises:
        TaskError: A task is unknown, or its data cannot be loaded.
    """
    manager = task_manager(names, tasks_path)
    lm = AncreLM(model, tokenizer, batch_size=batch_size, progress=progress)
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        results = evaluator.simple_evaluate(
            model=lm, tasks=list(names), task_manager=manager, limit=limit, log_samples=False,
        )  # fmt: skip
    except (ConnectionError, OSError) as error:
        raise TaskError(
            f"could not load the data of {', '.join(names)}: {error}. Hub tasks need network "
            "access (or the datasets cache); local tasks read the files their YAML names"
        ) from None
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
    if results is None:
        raise TaskError("lm-evaluation-harness returned no results")
    return results
