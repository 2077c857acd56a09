"""A multiple-choice lm-eval task over a JSONL file, written on the spot (no hub needed)."""

from __future__ import annotations

import json
from pathlib import Path

from ancre.data.tokenizer import Tokenizer

TASK = "ancre_local_choice"


def write_task(folder: Path, docs: list[dict]) -> Path:
    """Writes ``<folder>/docs.jsonl`` and the task's YAML; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{context}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{label}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )
    return folder


def task_env(env: dict[str, str], root: Path) -> dict[str, str]:
    """The subprocess environment, with every Hugging Face cache under ``root``, offline."""
    return {
        **env,
        "HF_HOME": str(root / "hf_home"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }


def single_piece_words(tokenizer: Tokenizer, count: int) -> list[tuple[str, int]]:
    """Words that are one piece alone and after another word (``"a b"`` -> [a, b])."""
    words = []
    for piece_id in range(tokenizer.vocab_size):
        word = tokenizer.decode([piece_id]).strip()
        if len(word) >= 3 and word.isalpha() and tokenizer.encode_one(word) == [piece_id]:
            if tokenizer.encode_one(f"the {word}")[-1:] == [piece_id]:
                words.append((word, piece_id))
    assert len(words) >= count, "the sample tokenizer has too few whole-word pieces"
    return words[:count]


def longer_loses(tokenizer: Tokenizer, count: int) -> tuple[list[dict], float]:
    """Documents whose choices are a word and that word followed by two more.

    The longer choice's tokens extend the shorter's, so its log-likelihood is the
    shorter's plus negative terms: any model prefers the shorter one. The label names
    the shorter choice in two documents of three; returns the documents and the
    accuracy that follows.
    """
    words = [word for word, _ in single_piece_words(tokenizer, count + 3)]
    docs, shorter_labelled = [], 0
    for k in range(count):
        short = words[k + 1]
        long = f"{short} {words[k + 2]} {words[k + 3]}"
        choices = [long, short] if k % 2 else [short, long]
        wanted = short if k % 3 != 2 else long
        shorter_labelled += wanted == short
        docs.append({"context": words[k], "choices": choices, "label": choices.index(wanted)})
    return docs, shorter_labelled / count
