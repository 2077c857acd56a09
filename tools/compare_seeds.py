"""Topologies compared over seeds: final validation loss, steps to the baseline's, costs.

Reads the run folders ``<name>-s<seed>`` under one folder (as the sweeps
configs/sweeps/lm_cpu_seeds.yaml and zoo_cpu.yaml name them), labels each by its saved
config (``topology.kind``, with ``-dynamic`` for input-dependent stream weights) and
prints one table per wiring:

- final val_loss: mean and spread (sample standard deviation) over the seeds;
- steps to reach the baseline's final val_loss, as a fraction of the baseline's own
  steps, seed by seed and then averaged (read off the val_loss curve between
  evaluations, by interpolation: ancre/viz/curves.py);
- costs: parameters added to the baseline's model; step time as the ratio of the
  baseline's median training tokens/s to the wiring's, from the runs' own metrics (so
  only as fair as the machine was quiet: the sweep runs one run after another); and
  the bytes autograd saves for backward in one forward pass of the run's micro-batch
  under bf16 autocast, as a ratio to the baseline's (ancre/model/memory.py: counted,
  device-independent; tools/bench_step.py --zoo measures all three in one process).

    python tools/compare_seeds.py runs/sweeps/zoo_cpu --baseline cascaded
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from ancre.config import AncreConfig, load_config
from ancre.model import build_model
from ancre.model.memory import saved_for_backward_bytes
from ancre.run_folder import RunFolder, read_metrics
from ancre.viz.curves import final_value, steps_to_reach


def label(config: AncreConfig) -> str:
    """The wiring a run's config names: its kind, ``-dynamic`` when that is set."""
    return config.topology.kind + ("-dynamic" if config.topology.dynamic else "")


def model_costs(config: AncreConfig) -> tuple[int, int]:
    """Parameters and saved-for-backward bytes of a run's model on one micro-batch."""
    torch.manual_seed(0)
    model = build_model(config, config.model.vocab_size or config.data.tokenizer_vocab_size)
    model.train()
    shape = (config.train.micro_batch_size, config.data.seq_len)
    tokens = torch.randint(0, model.shape.vocab_size, shape)
    return model.num_parameters(), saved_for_backward_bytes(model, tokens, tokens)


def read_runs(folder: Path) -> tuple[dict[str, dict[int, list[dict]]], dict[str, AncreConfig]]:
    """Metrics by wiring and seed, and one config per wiring."""
    runs: dict[str, dict[int, list[dict]]] = defaultdict(dict)
    configs: dict[str, AncreConfig] = {}
    for run in sorted(folder.iterdir()):
        match = re.fullmatch(r"(.+)-s(\d+)", run.name)
        layout = RunFolder(run)
        if not (match and layout.metrics_file.is_file() and layout.config_file.is_file()):
            continue
        config = load_config(layout.config_file)
        runs[label(config)][int(match.group(2))] = read_metrics(layout.metrics_file).records
        configs.setdefault(label(config), config)
    return runs, configs


def tokens_per_s(by_seed: dict[int, list[dict]]) -> float:
    """Median training throughput over every logged interval of every seed."""
    rates = [r["tokens_per_s"] for records in by_seed.values() for r in records
             if isinstance(r.get("tokens_per_s"), int | float)]  # fmt: skip
    return statistics.median(rates) if rates else float("nan")


def main() -> None:
    """Parses the arguments, reads the runs and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder holding <name>-s<seed> run folders")
    parser.add_argument("--baseline", default="cascaded", help="the wiring compared against")
    parser.add_argument("--no-costs", action="store_true", help="leave out the model costs")
    args = parser.parse_args()

    runs, configs = read_runs(args.folder)
    if args.baseline not in runs:
        raise SystemExit(f"no {args.baseline} runs (<name>-s<seed> with a config) in {args.folder}")
    baseline = runs[args.baseline]
    costs = {} if args.no_costs else {name: model_costs(c) for name, c in configs.items()}
    base_rate = tokens_per_s(baseline)

    print(f"{'wiring':<16} {'seeds':>5} {'final val_loss':>14} {'sd':>7} {'ppl':>7} "
          f"{'steps to base':>13} {'params added':>12} {'time ratio':>10} "
          f"{'saved ratio':>11}")  # fmt: skip
    details = []
    for name, by_seed in runs.items():
        finals = [final_value(records) for records in by_seed.values()]
        mean = statistics.mean(finals)
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        ratios = []
        for seed, records in sorted(by_seed.items()):
            if seed not in baseline:
                continue
            target = final_value(baseline[seed])
            own = steps_to_reach(baseline[seed], target)
            steps = steps_to_reach(records, target)
            if steps is not None and own:
                ratios.append(steps / own)
            shown = "never" if steps is None else f"~{steps:.0f}"
            details.append(f"  {name:<16} seed {seed}: {shown} steps (baseline ~{own:.0f})")
        reach = f"{statistics.mean(ratios):.3f}" if len(ratios) == len(by_seed) else "not all"
        params = saved = "n/a"
        if costs:
            params = f"{costs[name][0] - costs[args.baseline][0]:,d}"
            saved = f"{costs[name][1] / costs[args.baseline][1]:.3f}x"
        time_ratio = base_rate / tokens_per_s(by_seed)
        print(f"{name:<16} {len(finals):>5} {mean:14.4f} {spread:7.4f} {2.718281828**mean:7.2f} "
              f"{reach:>13} {params:>12} {time_ratio:9.3f}x {saved:>11}")  # fmt: skip
    print(f"\nsteps to reach {args.baseline}'s final val_loss (same seed), read off the val_loss "
          "curve between evaluations:")  # fmt: skip
    print("\n".join(details))


if __name__ == "__main__":
    main()
