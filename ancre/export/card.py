"""The model card (README.md) of an exported folder: the run, its config, its results."""

from __future__ import annotations

from pathlib import Path

import yaml

from ancre.config import config_dict
from ancre.run_folder import RunFolder, read_metrics
from ancre.train.trained import TrainedModel

FORMED = ("ancre", "uniform", "fixed")
"""The kinds that take a topology.form."""


def final_validation(trained: TrainedModel) -> tuple[int, float] | None:
    """(step, val_loss) of the last evaluation at or before the checkpoint's step.

    Read from the run's metrics.jsonl; None for a conversion or a checkpoint kept
    outside its run folder, or when the run logged no evaluation.
    """
    if not trained.is_checkpoint or (run := RunFolder.holding(trained.folder)) is None:
        return None
    last = None
    for record in read_metrics(run.metrics_file).records:
        step, loss = record.get("step"), record.get("val_loss")
        if isinstance(step, int) and isinstance(loss, float) and step <= (trained.step or 0):
            last = (step, loss)
    return last


def model_card(trained: TrainedModel, matrix: list[list[float]]) -> str:
    """The card's Markdown.

    Args:
        trained: The exported model.
        matrix: Its connection matrix P (L rows of L+1), as the model computes it.
    """
    config = trained.config
    topology = config.topology
    validation = final_validation(trained)
    loss = (
        f"{validation[1]:.4f} (the run's evaluation at step {validation[0]}: mean cross-entropy "
        f"per token over {config.eval.tokens} validation tokens, from its metrics.jsonl)"
        if validation is not None
        else "not known (the folder was not exported from a checkpoint inside its run folder)"
    )
    shape = trained.model.shape
    lines = [
        "---",
        "library_name: transformers",
        "tags: [ancre, causal-lm, learned-residual-topology]",
        "---",
        f"# {config.run.name}",
        "",
        "A Llama-style language model whose residual wiring is an L x (L+1) connection "
        "matrix P, trained with ancre: block j adds sum_i P[j, i] h_i of the earlier states "
        "to its output.",
        "",
        "| | |",
        "|---|---|",
        f"| run | `{config.run.name}` |",
        f"| exported from | `{trained.folder.name}` (step {trained.step}"
        + (f", {trained.tokens:,} training tokens)" if trained.tokens is not None else ")")
        + " |",
        f"| shape | {shape.num_layers} blocks, hidden {shape.hidden_size}, {shape.num_heads} "
        f"heads ({shape.num_kv_heads} key/value), vocabulary {shape.vocab_size}, "
        f"{trained.model.num_parameters():,} parameters |",
        f"| topology | {topology.kind}"
        + (f", temperature {topology.temperature}" if topology.kind == "ancre" else "")
        + (f", edges {topology.edges}" if topology.kind == "fixed" else "")
        + (f", form {topology.form}" if topology.kind in FORMED else "")
        + " |",
        f"| formula | `{trained.model.topology.snapshot(0, 0).formula}` |"
        if topology.kind in FORMED
        else "| formula | `h_{j+1} = y_j` |",
        f"| final validation loss | {loss} |",
        "",
        "## Loading",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'model = AutoModelForCausalLM.from_pretrained("PATH", trust_remote_code=True)',
        'tokenizer = AutoTokenizer.from_pretrained("PATH")',
        'inputs = tokenizer("The weather", return_tensors="pt")',
        "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=20)[0]))",
        "```",
        "",
        "The prompt takes no BOS token: training joined documents with EOS only.",
        "",
        "## Connection matrix",
        "",
        "Row j: the weights block j puts on h_0 (the embeddings) .. h_j (its own input).",
        "",
        "| block | " + " | ".join(f"h{i}" for i in range(len(matrix))) + " |",
        "|---" * (len(matrix) + 1) + "|",
        *(
            f"| {j} | "
            + " | ".join(f"{row[i]:.3f}" if i <= j else "" for i in range(len(matrix)))
            + " |"
            for j, row in enumerate(matrix)
        ),
        "",
        "## Training config",
        "",
        "```yaml",
        yaml.safe_dump(config_dict(config), sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(trained: TrainedModel, matrix: list[list[float]], path: Path) -> None:
    """Writes the card to ``path``."""
    path.write_text(model_card(trained, matrix), encoding="utf-8")
