"""Topologies compared over seeds: final validation loss, steps to the baseline's, costs.

Reads the run folders ``<setting>-s<seed>`` under one folder (as the sweeps of
configs/sweeps/ name them), groups them by setting (the name without its seed) and
prints one row per setting:

- final val_loss: mean and spread (sample standard deviation) over the seeds;
- the paired difference from the baseline: each seed's final val_loss minus the
  baseline's of the same seed (same data order and block initialisation), mean and
  spread over the seeds, flagged when its mean is within one spread of zero;
- steps to reach the baseline's final val_loss, as a fraction of the baseline's own
  steps, seed by seed and then averaged (read off the val_loss curve between
  evaluations, by interpolation: ancre/viz/curves.py);
- the RMS of the last state (what the final norm reads) at the run's last per-block
  statistics record (``train.block_stats_every``), mean over the seeds; n/a without;
- costs: parameters added to the baseline's model; step time as the ratio of the
  baseline's median training tokens/s to the wiring's, from the runs' own metrics (so
  only as fair as the machine was quiet: the sweep runs one run after another); and
  the bytes autograd saves for backward in one forward pass of the run's micro-batch
  under bf16 autocast, as a ratio to the baseline's (ancre/model/memory.py: counted,
  device-independent; tools/bench_step.py --zoo measures all three in one process).

    python tools/compare_seeds.py runs/sweeps/lm_cpu_seeds --baseline cascaded
    python tools/compare_seeds.py runs/sweeps/zoo_cpu --baseline cascaded-d0

``--match PATTERN`` keeps only the runs whose name matches a regular expression (one
shape of a sweep over shapes, say). A run counts once it is finished (its metrics hold
the evaluation at its config's ``train.steps``); the others are named and left out.
"""

from __future__ import annotations

import argparse
import math
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


def model_costs(config: AncreConfig) -> tuple[int, int]:
    """Parameters and saved-for-backward bytes of a run's model on one micro-batch."""
    torch.manual_seed(0)
    model = build_model(config, config.model.vocab_size or config.data.tokenizer_vocab_size)
    model.train()
    shape = (config.train.micro_batch_size, config.data.seq_len)
    tokens = torch.randint(0, model.shape.vocab_size, shape)
    return model.num_parameters(), saved_for_backward_bytes(model, tokens, tokens)


def read_runs(
    folder: Path, pattern: str = ""
) -> tuple[dict[str, dict[int, list[dict]]], dict[str, AncreConfig], list[str]]:
    """Metrics by setting and seed of the finished runs, one config per setting.

    Args:
        folder: The sweep's folder of ``<setting>-s<seed>`` run folders.
        pattern: Keep only the runs whose name this regular expression finds.

    Returns:
        (metrics by setting and seed, config by setting, names of the unfinished runs:
        no evaluation at their ``train.steps`` yet).
    """
    runs: dict[str, dict[int, list[dict]]] = defaultdict(dict)
    configs: dict[str, AncreConfig] = {}
    unfinished = []
    for run in sorted(folder.iterdir()):
        match = re.fullmatch(r"(.+)-s(\d+)", run.name)
        layout = RunFolder(run)
        if not (match and layout.metrics_file.is_file() and layout.config_file.is_file()):
            continue
        if not re.search(pattern, run.name):
            continue
        config = load_config(layout.config_file)
        records = read_metrics(layout.metrics_file).records
        if not any(r.get("step") == config.train.steps and "val_loss" in r for r in records):
            unfinished.append(run.name)
            continue
        setting = match.group(1)
        runs[setting][int(match.group(2))] = records
        configs.setdefault(setting, config)
    return runs, configs, unfinished


def paired_difference(
    by_seed: dict[int, list[dict]], baseline: dict[int, list[dict]]
) -> tuple[float, float, int] | None:
    """Mean and spread over the shared seeds of (final val_loss - the baseline's).

    Returns:
        (mean, sample standard deviation, seeds), or None without a shared seed.
    """
    seeds = sorted(set(by_seed) & set(baseline))
    differences = [final_value(by_seed[s]) - final_value(baseline[s]) for s in seeds]
    if not differences:
        return None
    spread = statistics.stdev(differences) if len(differences) > 1 else 0.0
    return statistics.mean(differences), spread, len(differences)


def tokens_per_s(by_seed: dict[int, list[dict]]) -> float:
    """Median training throughput over every logged interval of every seed."""
    rates = [r["tokens_per_s"] for records in by_seed.values() for r in records
             if isinstance(r.get("tokens_per_s"), int | float)]  # fmt: skip
    return statistics.median(rates) if rates else float("nan")


def last_state_rms(by_seed: dict[int, list[dict]]) -> str:
    """Mean over the seeds of RMS(h_L) at each run's last block_stats record, or n/a."""
    values = []
    for records in by_seed.values():
        stats = [r["block_stats"] for r in records if isinstance(r.get("block_stats"), dict)]
        rms = stats[-1].get("state_rms") if stats else None
        if not isinstance(rms, list) or not rms:
            return "n/a"
        values.append(float(rms[-1]))
    return f"{statistics.mean(values):.4g}"


def main() -> None:
    """Parses the arguments, reads the runs and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder holding <name>-s<seed> run folders")
    parser.add_argument("--baseline", default="cascaded", help="the wiring compared against")
    parser.add_argument("--no-costs", action="store_true", help="leave out the model costs")
    parser.add_argument("--match", default="", help="only runs whose name matches this regex")
    args = parser.parse_args()

    runs, configs, unfinished = read_runs(args.folder, args.match)
    if unfinished:
        print(f"left out, not finished: {', '.join(unfinished)}\n")
    if args.baseline not in runs:
        raise SystemExit(f"no {args.baseline} runs (<name>-s<seed> with a config) in {args.folder}")
    baseline = runs[args.baseline]
    costs = {} if args.no_costs else {name: model_costs(c) for name, c in configs.items()}
    base_rate = tokens_per_s(baseline)

    width = max(16, *(len(name) for name in runs))
    print(f"{'setting':<{width}} {'seeds':>5} {'final val_loss':>14} {'sd':>7} {'ppl':>7} "
          f"{'paired diff':>11} {'sd':>7} {'steps to base':>13} {'last RMS':>9} "
          f"{'params added':>12} {'time ratio':>10} {'saved ratio':>11}")  # fmt: skip
    within = []
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
            details.append(f"  {name:<{width}} seed {seed}: {shown} steps (baseline ~{own:.0f})")
        reach = f"{statistics.mean(ratios):.3f}" if len(ratios) == len(by_seed) else "not all"
        params = saved = "n/a"
        if costs:
            params = f"{costs[name][0] - costs[args.baseline][0]:,d}"
            saved = f"{costs[name][1] / costs[args.baseline][1]:.3f}x"
        time_ratio = base_rate / tokens_per_s(by_seed)
        paired = paired_difference(by_seed, baseline) if name != args.baseline else None
        diff, diff_sd = ("", "") if paired is None else (f"{paired[0]:+.4f}", f"{paired[1]:.4f}")
        if paired is not None and paired[2] > 1 and abs(paired[0]) <= paired[1]:
            within.append(name)
            diff += "*"
        rms = last_state_rms(by_seed)
        print(f"{name:<{width}} {len(finals):>5} {mean:14.4f} {spread:7.4f} "
              f"{math.exp(mean):7.2f} {diff:>11} {diff_sd:>7} {reach:>13} "
              f"{rms:>9} {params:>12} {time_ratio:9.3f}x {saved:>11}")  # fmt: skip
    print(f"\npaired diff: final val_loss minus {args.baseline}'s of the same seed, mean and "
          "sample sd over the shared seeds" + (f"; * within one sd of zero: {', '.join(within)}"
                                               if within else ""))  # fmt: skip
    print(f"\nsteps to reach {args.baseline}'s final val_loss (same seed), read off the val_loss "
          "curve between evaluations:")  # fmt: skip
    print("\n".join(details))


if __name__ == "__main__":
    main()
