"""The depth study's table: every form against both plain residuals and its own uniform mix.

Reads the sweeps of configs/sweeps/depth_*.yaml (run folders named
``<kind>-<form>-<init>-L<blocks>-s<seed>``) and prints, per depth, one Markdown row per
setting:

- final val_loss, mean (sample sd) over the finished seeds;
- paired differences, seed by seed, against the plain residual with the depth-scaled
  initialisation (``cascaded-additive-depth_scaled``), against the plain residual with
  the plain initialisation (``cascaded-additive-normal``) and, for Ancre, against the
  frozen uniform mix of the same form; mean (sd), ``*`` when within one sd of zero;
- steps to reach the depth-scaled plain residual's final val_loss, as a fraction of its
  steps (``ancre.viz.curves.steps_to_reach``, seed by seed, then the mean);
- RMS of the last state at the last per-block statistics record, mean over seeds, and
  the largest ``bf16_rounding`` of any block there (the part of an update that storing
  the state in bf16 would round away, relative to the update).

    python tools/depth_study.py runs/sweeps/depth_h64 runs/sweeps/depth_h64_deep
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import defaultdict
from pathlib import Path

from ancre.config import load_config
from ancre.run_folder import RunFolder, read_metrics
from ancre.viz.curves import final_value, steps_to_reach

NAME = re.compile(r"(?P<setting>.+)-L(?P<blocks>\d+)-s(?P<seed>\d+)")
BASELINE = "cascaded-additive-depth_scaled"
PLAIN_INIT = "cascaded-additive-normal"


def read_study(folders: list[Path]) -> dict[int, dict[str, dict[int, list[dict]]]]:
    """Finished runs' metrics by depth, setting and seed."""
    runs: dict[int, dict[str, dict[int, list[dict]]]] = defaultdict(lambda: defaultdict(dict))
    for folder in folders:
        for run in sorted(folder.iterdir()):
            match = NAME.fullmatch(run.name)
            layout = RunFolder(run)
            if not match or not layout.config_file.is_file():
                continue
            steps = load_config(layout.config_file).train.steps
            records = read_metrics(layout.metrics_file).records
            if any(r.get("step") == steps and "val_loss" in r for r in records):
                runs[int(match["blocks"])][match["setting"]][int(match["seed"])] = records
    return runs


def paired(by_seed: dict[int, list[dict]], other: dict[int, list[dict]] | None) -> str:
    """``mean (sd)`` of the per-seed differences of final val_loss, ``*`` within one sd."""
    if not other:
        return ""
    seeds = sorted(set(by_seed) & set(other))
    diffs = [final_value(by_seed[s]) - final_value(other[s]) for s in seeds]
    if not diffs:
        return ""
    mean = statistics.mean(diffs)
    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    flag = "*" if len(diffs) > 1 and abs(mean) <= spread else ""
    return f"{mean:+.3f}{flag} ({spread:.3f})"


def last_stats(by_seed: dict[int, list[dict]]) -> tuple[str, str]:
    """(mean RMS of the last state, largest bf16 rounding ratio) at the last stats record."""
    rms, rounding = [], []
    for records in by_seed.values():
        stats = [r["block_stats"] for r in records if isinstance(r.get("block_stats"), dict)]
        if not stats:
            return "n/a", "n/a"
        rms.append(float(stats[-1]["state_rms"][-1]))
        rounding.append(max(stats[-1].get("bf16_rounding") or [float("nan")]))
    return f"{statistics.mean(rms):.3g}", f"{max(rounding):.3g}"


def reach(by_seed: dict[int, list[dict]], base: dict[int, list[dict]]) -> str:
    """Mean over seeds of the steps to the baseline's final val_loss / the baseline's."""
    ratios = []
    for seed, records in by_seed.items():
        if seed not in base:
            continue
        target = final_value(base[seed])
        own, steps = steps_to_reach(base[seed], target), steps_to_reach(records, target)
        if steps is None or not own:
            return "not in every seed"
        ratios.append(steps / own)
    return f"{statistics.mean(ratios):.2f}" if ratios else ""


def main() -> None:
    """Parses the arguments and prints one table per depth."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="sweep folders of run folders")
    args = parser.parse_args()
    for blocks, settings in sorted(read_study(args.folders).items()):
        base, plain = settings.get(BASELINE, {}), settings.get(PLAIN_INIT, {})
        print(f"\n{blocks} blocks (seeds: {', '.join(map(str, sorted(base)))} of the baseline)\n")
        print("| setting | seeds | final val_loss | - cascaded (depth-scaled) | - cascaded "
              "(normal init) | - uniform, same form | steps to cascaded's loss | RMS(h_L) | "
              "max bf16 rounding |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for name, by_seed in sorted(settings.items()):
            finals = [final_value(r) for r in by_seed.values()]
            spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
            kind, form = name.split("-")[:2]
            uniform = settings.get(f"uniform-{form}-depth_scaled") if kind == "ancre" else None
            rms, rounding = last_stats(by_seed)
            print(
                f"| {name} | {len(finals)} | {statistics.mean(finals):.3f} ({spread:.3f}) | "
                f"{paired(by_seed, base) if name != BASELINE else ''} | "
                f"{paired(by_seed, plain) if name != PLAIN_INIT else ''} | "
                f"{paired(by_seed, uniform)} | {reach(by_seed, base)} | {rms} | {rounding} |"
            )


if __name__ == "__main__":
    main()
