"""A multiple-choice lm-eval task over a JSONL file, written on the spot (no hub needed)."""

from __future__ import annotations

import json
from pathlib import Path

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
