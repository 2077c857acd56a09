"""Writes every figure of a run, the statistics CSV, a summary and report.html."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ancre.snapshot import TopologySnapshot
from ancre.viz.ablation import ablation_sections
from ancre.viz.animation import write_animation
from ancre.viz.canvas import save_figure
from ancre.viz.compare import (
    Comparison,
    compare_runs,
    compare_settings,
    differing_keys,
    setting_key,
)
from ancre.viz.curves import final_value, series
from ancre.viz.heatmap import describe_snapshot, evolution_figure, matrix_figure
from ancre.viz.html import Section, render_page
from ancre.viz.losses import loss_figure
from ancre.viz.run_data import (
    RunData,
    VizError,
    evenly_spaced,
    expand_runs,
    load_run,
    select_snapshot,
)
from ancre.viz.statistics import STATISTICS, statistics_rows, write_statistics_csv
from ancre.viz.statplots import depth_figure, training_figure
from ancre.viz.streamplots import stream_depth_figure, stream_stats, stream_training_figure
from ancre.viz.wiring import DEFAULT_TOP_K, wiring_figure

EVOLUTION_PANELS = 6
GIF_EMBED_LIMIT = 8 * 2**20  # bytes; a larger animation is linked, not embedded


@dataclass(frozen=True)
class ReportOptions:
    """What ``ancre viz`` draws.

    Attributes:
        step: The snapshot to show in the single-step figures; None is the latest.
        svg: Also write every figure as SVG.
        compare: Other run folders whose loss curves are overlaid.
        baseline: Name of the baseline run of the comparison; None is the first run.
        top_k: Arcs per block in the wiring diagram.
        threshold: Draw every connection with |P| >= threshold instead of the top k.
        mp4: Write the animation as MP4 (when ffmpeg is on PATH) instead of GIF.
        evolution_steps: Steps of the small multiples; None picks ~6 evenly spaced.
        formats: Formats of every figure (png, pdf, svg); the first is shown in the page.
        dpi: Resolution of raster figures (None: 100).
        titles: Draw titles on the figures (off for a paper's own captions).
        compared_keys: Config keys (or prefixes) the comparison is about; runs that
            differ in other keys are named with them.
    """

    step: int | None = None
    svg: bool = False
    compare: Sequence[Path] = ()
    baseline: str | None = None
    top_k: int = DEFAULT_TOP_K
    threshold: float | None = None
    mp4: bool = False
    evolution_steps: Sequence[int] | None = None
    formats: Sequence[str] = ("png",)
    dpi: int | None = None
    titles: bool = True
    compared_keys: Sequence[str] = ("topology.",)


@dataclass
class Report:
    """What a report wrote and found.

    Attributes:
        files: Every file written, in order.
        comparisons: Steps-to-reach results when runs were compared.
        notes: Lines for people (comparisons, warnings).
    """

    files: list[Path] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def unique_names(runs: Sequence[RunData]) -> list[str]:
    """Run names, made distinct with their parent folder (then a number) where they clash."""
    names = [run.name for run in runs]
    names = [
        f"{run.path.resolve().parent.name}/{run.name}" if names.count(run.name) > 1 else run.name
        for run in runs
    ]
    return [name if names.count(name) == 1 else f"{name} #{k + 1}" for k, name in enumerate(names)]


def matrix_caption(snapshot: TopologySnapshot) -> str:
    """The kind's formula and, for other papers' wirings, how their matrix is read."""
    text = f"{snapshot.parameterisation}: {snapshot.formula}. "
    if snapshot.own_output is None:
        return text + "Row j: the weights block j puts on the states h_0 (embeddings) .. h_j."
    own = ", ".join(f"{d:.3g}" for d in snapshot.own_output)
    text += (
        "The effective matrix: row j holds P[j, i] in h_{j+1} = d_j y_j + sum_i P[j, i] h_i "
        f"(h_i the input of block i; h_L what the final norm reads), with d = [{own}]."
    )
    if snapshot.spread is not None:
        spread = max(max(row) for row in snapshot.spread)
        text += f" Input-dependent: the mean over {snapshot.probe}; largest std {spread:.3g}."
    return text


def run_summary(run: RunData, name: str) -> dict[str, object]:
    """One row of the summary table: topology, extent of training, final losses."""
    last = run.snapshots[-1] if run.snapshots else None
    steps = [r["step"] for r in run.records if isinstance(r.get("step"), int)]
    tokens = [r["tokens"] for r in run.records if isinstance(r.get("tokens"), int)]
    val_loss = final_value(run.records, "val_loss")
    return {
        "run": name,
        "folder": str(run.path),
        "blocks L": run.num_layers if last else "",
        "topology": describe_snapshot(last) if last else "",
        "formula": last.formula if last else "",
        "snapshots": len(run.snapshots),
        "last step": max(steps) if steps else (last.step if last else ""),
        "tokens": max(tokens) if tokens else (last.tokens if last else ""),
        "final loss": final_value(run.records, "loss") or float("nan"),
        "final val_loss": val_loss if val_loss is not None else float("nan"),
        "final val_ppl": final_value(run.records, "val_ppl") or float("nan"),
    }


def _evolution_snapshots(run: RunData, steps: Sequence[int] | None) -> list:
    if steps is None:
        return evenly_spaced(run.snapshots, EVOLUTION_PANELS)
    return [select_snapshot(run.snapshots, step) for step in steps]


class _Figures:
    """Saves figures into the output folder in every asked format, recording the files."""

    def __init__(self, out: Path, options: ReportOptions, report: Report) -> None:
        self.out, self.options, self.report = out, options, report
        self.formats = list(dict.fromkeys([*options.formats, *(["svg"] if options.svg else [])]))

    def save(self, figure, stem: str) -> Path:
        """Writes ``figure`` as ``stem.<format>``; returns the file the page shows."""
        paths = save_figure(
            figure, self.out, stem, self.formats, self.options.dpi, self.options.titles
        )
        self.report.files.extend(paths)
        return next((p for p in paths if p.suffix == ".png"), paths[0])


def write_report(run_dir: str | Path, out_dir: str | Path, options: ReportOptions) -> Report:
    """Draws every figure of a run and writes them with report.html into ``out_dir``.

    Args:
        run_dir: A run folder (or a single snapshot file).
        out_dir: Where to write; created if missing.
        options: What to draw.

    Returns:
        The files written and the comparisons made.

    Raises:
        VizError: A folder, snapshot step or baseline is missing (names what).
        SnapshotError: A snapshot file is malformed (names the file).
    """
    run = load_run(run_dir)
    others = _compared_runs(run_dir, options.compare)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report()
    figures = _Figures(out, options, report)
    names = unique_names([run, *others])
    shown = select_snapshot(run.snapshots, options.step)
    sections = _topology_sections(run, shown, names[0], figures)
    sections.append(_animation_section(run, names[0], figures))
    sections += _statistics_sections(run, shown, names[0], figures)
    sections += _stream_sections(run, names[0], figures)
    sections += ablation_sections(run.path, names[0], figures.save)
    report.files.append(write_statistics_csv(run.snapshots, out / "block_statistics.csv"))
    runs = list(zip(names, [run.records] + [o.records for o in others], strict=True))
    if others:
        report.comparisons, notes = _compare([run, *others], names, options)
        report.notes[:0] = notes
    elif options.baseline is not None:
        raise VizError("--baseline needs --compare RUN [RUN ...]")
    sections.append(
        Section(
            "Loss curves",
            figures.save(loss_figure(runs, report.comparisons), "losses"),
            "Thin lines: training loss; markers: val_loss.",
        )
    )
    summary = [run_summary(r, n) for r, n in zip([run, *others], names, strict=True)]
    report.files.append(_write_summary_json(out, summary, shown.step, report))
    final_stats = [
        {"block": row["block"], **{k: row[k] for k in STATISTICS}}
        for row in statistics_rows([shown])
    ]
    page = render_page(
        f"ancre viz: {names[0]} (step {shown.step})",
        summary,
        sections,
        final_stats,
        report.notes + _val_notes(runs),
    )
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    report.files.append(html_path)
    return report


def _compared_runs(run_dir: str | Path, compare: Sequence[Path]) -> list[RunData]:
    """The runs given with --compare (run or sweep folders), without the shown run twice."""
    others = []
    for given in compare:
        inner = expand_runs([given])
        for path in inner:  # a sweep folder may hold the shown run: not twice
            if inner == [Path(given)] or path.resolve() != Path(run_dir).resolve():
                others.append(load_run(path, need_snapshots=False))
    return others


def _topology_sections(
    run: RunData, shown: TopologySnapshot, name: str, figures: _Figures
) -> list[Section]:
    """The connection matrix at the shown step, its evolution and the wiring diagram."""
    options = figures.options
    evolution = _evolution_snapshots(run, options.evolution_steps)
    return [
        Section(
            "Connection matrix",
            figures.save(matrix_figure(shown, name), "matrix"),
            matrix_caption(shown),
        ),
        Section(
            "Connection matrix over training",
            figures.save(evolution_figure(evolution, name), "evolution"),
            "Small multiples on one colour scale.",
        ),
        Section(
            "Wiring diagram",
            figures.save(wiring_figure(shown, name, options.top_k, options.threshold), "wiring"),
            "Arc width and colour show P[j, i].",
        ),
    ]


def _animation_section(run: RunData, name: str, figures: _Figures) -> Section:
    """The animation over every snapshot: embedded when small enough, else linked."""
    mp4, report = figures.options.mp4, figures.report
    animation = write_animation(run.snapshots, figures.out, name, mp4=mp4)
    report.files.append(animation)
    if mp4 and animation.suffix != ".mp4":
        report.notes.append("ffmpeg is not on PATH: the animation was written as a GIF.")
    embed = animation.suffix == ".gif" and animation.stat().st_size <= GIF_EMBED_LIMIT
    return Section(
        f"Animation over all {len(run.snapshots)} snapshots",
        animation if embed else None,
        link=None if embed else animation,
    )


def _statistics_sections(
    run: RunData, shown: TopologySnapshot, name: str, figures: _Figures
) -> list[Section]:
    """Per-block statistics against depth (at the shown step) and over training."""
    reference = run.snapshots[0] if len(run.snapshots) > 1 else None
    return [
        Section(
            "Per-block statistics against depth",
            figures.save(depth_figure(shown, reference, name), "block_stats_depth"),
        ),
        Section(
            "Per-block statistics over training",
            figures.save(training_figure(run.snapshots, name), "block_stats_training"),
        ),
    ]


def _stream_sections(run: RunData, name: str, figures: _Figures) -> list[Section]:
    """The residual stream's statistics (train.block_stats_every), where the run has them."""
    stats = stream_stats(run.records)
    if not stats:
        return []
    caption = (
        "From metrics.jsonl (train.block_stats_every), over the first validation sequences: "
        "the RMS of each state, each block's update ratio, each term's share of the final "
        "state (projections summing to one) and the part of each update bf16 would round away."
    )
    return [
        Section(
            "The residual stream against depth",
            figures.save(stream_depth_figure(stats, name), "stream_depth"),
            caption,
        ),
        Section(
            "The residual stream over training",
            figures.save(stream_training_figure(stats, name), "stream_training"),
        ),
    ]


def _write_summary_json(
    out: Path, summary: list[dict[str, object]], shown_step: int, report: Report
) -> Path:
    """summary.json: the run table, the shown step, the comparisons and the notes."""
    record = {
        "runs": summary,
        "shown_step": shown_step,
        "comparisons": [
            {
                "run": c.run,
                "baseline": c.baseline,
                "curve": c.curve.key,
                "smoothed": c.curve.smoothed,
                "target": c.target,
                "steps": c.steps,
                "baseline_steps": c.baseline_steps,
                "spacing": c.spacing,
                "step_ratio": c.step_ratio,
                "description": c.describe(),
            }
            for c in report.comparisons
        ],
        "notes": report.notes,
    }
    path = out / "summary.json"
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return path


def _compare(
    runs: Sequence[RunData], names: Sequence[str], options: ReportOptions
) -> tuple[list[Comparison], list[str]]:
    """Steps-to-reach comparisons (one run per setting) or mean and spread (several seeds).

    Returns:
        The comparisons of single runs (empty with seeds) and the lines for people,
        warnings about unfair differences first.
    """
    groups: dict[str, list[int]] = {}
    for k, item in enumerate(runs):
        groups.setdefault(setting_key(item.config, names[k]), []).append(k)
    setting_names = {key: _setting_name(names[ks[0]]) for key, ks in groups.items()}
    notes = []
    firsts = {setting_names[key]: runs[ks[0]].config for key, ks in groups.items()}
    differences = differing_keys(firsts, options.compared_keys)
    if differences:
        notes.append(
            "warning: the runs differ in more than the compared keys ("
            + ", ".join(options.compared_keys) + "), so the comparison is not like for like: "
            + "; ".join(differences)
        )  # fmt: skip
    counts = {setting_names[key]: len(ks) for key, ks in groups.items()}
    if len(set(counts.values())) > 1:
        notes.append(
            "warning: the settings have different numbers of seeds: "
            + ", ".join(f"{n}: {c}" for n, c in counts.items())
        )
    seeded = any(len({repr((runs[k].config or {}).get("run.seed")) for k in ks}) > 1
                 for ks in groups.values())  # fmt: skip
    try:
        if seeded:
            settings = {
                setting_names[key]: [runs[k].records for k in ks] for key, ks in groups.items()
            }
            base = _baseline_setting(options.baseline, names, groups, setting_names)
            return [], notes + compare_settings(settings, base)
        records = [(names[k], item.records) for k, item in enumerate(runs)]
        comparisons = compare_runs(records, options.baseline)
    except ValueError as error:
        raise VizError(str(error)) from None
    return comparisons, [c.describe() for c in comparisons] + notes


def _setting_name(run_name: str) -> str:
    """A run's name without its seed suffix (``ancre-s2`` -> ``ancre``)."""
    return re.sub(r"[-_.]?s(eed)?\d+$", "", run_name) or run_name


def _baseline_setting(
    baseline: str | None,
    names: Sequence[str],
    groups: dict[str, list[int]],
    setting_names: dict[str, str],
) -> str:
    """The setting the baseline (a run or a setting name) belongs to; the first by default."""
    for key, members in groups.items():
        if baseline is None and 0 in members:
            return setting_names[key]
        if baseline in (setting_names[key], *[names[k] for k in members]):
            return setting_names[key]
    raise VizError(f"baseline {baseline!r} is not one of the runs or settings")


def _val_notes(runs: Sequence[tuple[str, Sequence]]) -> list[str]:
    notes = []
    for name, records in runs:
        if not series(records, "val_loss")[0]:
            notes.append(f"{name}: no val_loss records yet.")
    return notes
