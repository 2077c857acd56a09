"""Topologies compared over seeds: final validation loss and steps to the baseline's.

Reads run folders named ``<kind>-s<seed>`` (as configs/sweeps/lm_cpu_seeds.yaml names
them) under one folder and prints, per topology, the mean and spread of the final
val_loss, and per seed the first step at which each run reaches the baseline's final
val_loss, as a fraction of the baseline's own steps (the paper's "fewer iterations").

    python tools/compare_seeds.py runs/sweeps/lm_cpu_seeds --baseline cascaded

``--match PATTERN`` keeps only the runs whose name matches a regular expression (one
shape of a sweep over shapes, say).
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import defaultdict
from pathlib import Path

from ancre.run_folder import RunFolder, read_metrics
from ancre.viz.curves import final_value, steps_to_reach


def main() -> None:
    """Parses the arguments, reads the runs and prints the two tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder holding <kind>-s<seed> run folders")
    parser.add_argument("--baseline", default="cascaded")
    parser.add_argument("--match", default="", help="only runs whose name matches this regex")
    args = parser.parse_args()

    runs: dict[str, dict[int, list[dict]]] = defaultdict(dict)
    for run in sorted(args.folder.iterdir()):
        match = re.fullmatch(r"(.+)-s(\d+)", run.name)
        metrics = RunFolder(run).metrics_file
        if match and metrics.is_file() and re.search(args.match, run.name):
            runs[match.group(1)][int(match.group(2))] = read_metrics(metrics).records
    if args.baseline not in runs:
        raise SystemExit(f"no {args.baseline}-s<seed> runs in {args.folder}")

    print(f"{'topology':<10} {'seeds':>5} {'final val_loss':>16} {'spread (sd)':>12} {'ppl':>7}")
    for kind, by_seed in runs.items():
        finals = [final_value(records) for records in by_seed.values()]
        mean = statistics.mean(finals)
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        print(f"{kind:<10} {len(finals):>5} {mean:16.4f} {spread:12.4f} {2.718281828**mean:7.3f}")

    print(f"\nsteps to reach {args.baseline}'s final val_loss (same seed)")
    baseline = runs[args.baseline]
    for kind, by_seed in runs.items():
        ratios = []
        for seed, records in sorted(by_seed.items()):
            target = final_value(baseline[seed])
            own = steps_to_reach(baseline[seed], target)
            steps = steps_to_reach(records, target)
            if steps is not None and own:
                ratios.append(steps / own)
            shown = "never" if steps is None else f"~{steps:.0f}"
            print(f"  {kind:<10} seed {seed}: {shown} steps (baseline ~{own:.0f}; read off the "
                  "val_loss curve between evaluations)")  # fmt: skip
        if ratios:
            print(f"  {kind:<10} mean ratio {statistics.mean(ratios):.3f} "
                  f"({1 - statistics.mean(ratios):+.1%} steps saved)")  # fmt: skip


if __name__ == "__main__":
    main()
