"""Deep linear networks wired by ancre's topology module: the paper's theory experiment.

A stack of K bias-free linear layers W_1 .. W_K (``torch.nn.Linear(d, d, bias=False)``)
is wired by the project's own topology classes, which compute::

    h_{j+1} = W_j h_j + sum_{i=0..j} P[j, i] h_i          (h_0 = X, output h_K)

and trained by full-batch gradient descent with a small step (an approximation of
gradient flow) from a small initialisation, in float64, on whitened inputs
(X X^T = I) and a target Y = A X with a fixed random A. The loss is
1/2 ||h_K - Y||_F^2. With three layers, the fixed edge "0:1" gives
L = 1/2 ||W3 W2 (W1 + I) X - Y||^2 and "0:2" gives L = 1/2 ||W3 (W2 W1 + I) X - Y||^2.

Layouts (docs/method.md, "Why it should help"):

- fixed edges through ``parse_edges`` and ``FixedTopology``: ``0:1``, ``0:2``,
  ``0:2+2:3`` (four layers) and ``cascaded`` = ``0:1,1:2,...`` (an identity shortcut
  around every layer, a plain residual net);
- ``no shortcut``: ancre's ``Topology`` with kind cascaded, which has no mix at all
  (h_{j+1} = W_j h_j, the product W_K .. W_1);
- ``uniform``: ``UniformTopology`` (all shortcuts, equal weight, frozen);
- ``ancre``: ``AncreTopology`` (rows softmax(theta_j / tau)); its logits learn by the
  same gradient descent, with step ``lr * logit_lr_mult``.

Writes loss curves (PNG), the iterations to reach a loss threshold over several seeds,
a fitted rate for the last decades of every curve, the learned Ancre matrices and a
sweep of the temperature and the logit learning-rate multiplier::

    python tools/deep_linear.py --out runs/deep_linear            # the figures of docs/science.md
    python tools/deep_linear.py --out /tmp/dl --seeds 0 1 --iterations 4000 --no-sweep
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ancre.kernels import reference_backend
from ancre.model import (
    AncreTopology,
    FixedTopology,
    Topology,
    UniformTopology,
    parse_edges,
)
from ancre.snapshot import matrix_table

DTYPE = torch.float64


@dataclass(frozen=True)
class Layout:
    """One wiring of the stack.

    Attributes:
        name: Label in plots and tables.
        kind: ``fixed``, ``none`` (no mix), ``uniform`` or ``ancre``.
        edges: The ``parse_edges`` text of a fixed layout, else "".
        temperature: tau of an Ancre layout.
        logit_lr_mult: Multiplier of the logits' step for an Ancre layout.
    """

    name: str
    kind: str
    edges: str = ""
    temperature: float = 1e-2
    logit_lr_mult: float = 1.0


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on besides the layout and the seed.

    Attributes:
        dim: d, the width of every layer (X is d x n, A is d x d).
        samples: n, the number of inputs (n >= d); X has orthonormal rows.
        target_seed: Seed of the target map A and of X.
        init_scale: Standard deviation of the normal initialisation of every W.
        lr: Gradient-descent step of the weights.
        iterations: Most iterations of a run.
        stop_loss: A run stops once its loss falls below this (a numerical floor).
    """

    dim: int = 16
    samples: int = 16
    target_seed: int = 1000
    init_scale: float = 1e-3
    lr: float = 0.05
    iterations: int = 20_000
    stop_loss: float = 1e-12


@dataclass
class Run:
    """The outcome of one training run.

    Attributes:
        layout: The wiring trained.
        seed: Seed of the initialisation.
        losses: Loss before each iteration (a run that stopped early is shorter).
        matrix: Final (K, K+1) connection matrix.
    """

    layout: Layout
    seed: int
    losses: np.ndarray
    matrix: np.ndarray


def edge_chain(num_layers: int) -> str:
    """The edges of an identity shortcut around every layer: "0:1,1:2,...,K-1:K"."""
    return ",".join(f"{i}:{i + 1}" for i in range(num_layers))


def default_layouts(num_layers: int, ancre_settings: Sequence[tuple[float, float]]) -> list[Layout]:
    """The layouts compared at a depth (three or more layers).

    Args:
        num_layers: K.
        ancre_settings: (tau, logit_lr_mult) of each Ancre layout to include.

    Returns:
        The fixed layouts of the theory, uniform, no shortcut, then the Ancre ones.
    """
    layouts = [Layout("0:2", "fixed", "0:2")]
    if num_layers >= 4:
        layouts.insert(0, Layout("0:2+2:3", "fixed", "0:2,2:3"))
    layouts += [
        Layout("0:1", "fixed", "0:1"),
        Layout("cascaded (residual)", "fixed", edge_chain(num_layers)),
        Layout("no shortcut", "none"),
        Layout("uniform", "uniform"),
    ]
    for tau, mult in ancre_settings:
        layouts.append(Layout(f"ancre tau={tau:g} mult={mult:g}", "ancre", "", tau, mult))
    return layouts


def build_layout(layout: Layout, num_layers: int) -> Topology:
    """The ancre topology module of a layout, in float64, with the reference mix."""
    if layout.kind == "fixed":
        edges = parse_edges(layout.edges, num_layers)
        topology: Topology = FixedTopology(num_layers, reference_backend, edges)
    elif layout.kind == "uniform":
        topology = UniformTopology(num_layers, reference_backend)
    elif layout.kind == "ancre":
        topology = AncreTopology(num_layers, reference_backend, layout.temperature)
    elif layout.kind == "none":
        topology = Topology(num_layers, reference_backend)
    else:
        raise ValueError(f"unknown layout kind {layout.kind!r}")
    return topology.to(DTYPE)


def make_problem(settings: Settings) -> tuple[torch.Tensor, torch.Tensor]:
    """Whitened inputs and targets, fixed by ``settings.target_seed``.

    Returns:
        X (d, n) with X X^T = I and Y = A X (d, n), A (d, d) with N(0, 1/d) entries.
    """
    if settings.samples < settings.dim:
        raise ValueError(f"need samples >= dim for X X^T = I, got {settings.samples}")
    generator = torch.Generator().manual_seed(settings.target_seed)
    d, n = settings.dim, settings.samples
    target = torch.randn(d, d, generator=generator, dtype=DTYPE) / math.sqrt(d)  # (d, d)
    basis, _ = torch.linalg.qr(torch.randn(n, d, generator=generator, dtype=DTYPE))  # (n, d)
    inputs = basis.T.contiguous()  # (d, n), orthonormal rows
    return inputs, target @ inputs


def train(layout: Layout, num_layers: int, seed: int, settings: Settings) -> Run:
    """Trains one wired stack by full-batch gradient descent.

    Args:
        layout: The wiring.
        num_layers: K.
        seed: Seed of the initialisation (the same W's for every layout).
        settings: Problem and optimisation settings.

    Returns:
        The loss curve and the final connection matrix.
    """
    inputs, targets = make_problem(settings)
    d = settings.dim
    generator = torch.Generator().manual_seed(seed)
    blocks = nn.ModuleList(nn.Linear(d, d, bias=False, dtype=DTYPE) for _ in range(num_layers))
    with torch.no_grad():
        for block in blocks:
            block.weight.copy_(torch.randn(d, d, generator=generator, dtype=DTYPE))
            block.weight.mul_(settings.init_scale)
    topology = build_layout(layout, num_layers)
    steps = [(p, settings.lr) for p in blocks.parameters()]
    steps += [(p, settings.lr * layout.logit_lr_mult) for p in topology.parameters()]
    params = [p for p, _ in steps]
    h0 = inputs.T  # (n, d): one input per row, as nn.Linear expects
    goal = targets.T  # (n, d)
    losses = []
    for _ in range(settings.iterations):
        output = topology(list(blocks), h0)[-1]  # (n, d)
        loss = 0.5 * (output - goal).pow(2).sum()
        value = loss.item()
        losses.append(value)
        if value < settings.stop_loss or not math.isfinite(value):
            break
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for (param, step), grad in zip(steps, grads, strict=True):
                param.sub_(step * grad)
    matrix = topology.matrix().double().numpy()
    return Run(layout, seed, np.asarray(losses), matrix)


def iterations_to(losses: np.ndarray, threshold: float) -> int | None:
    """The first iteration whose loss is below threshold, or None."""
    below = np.flatnonzero(losses < threshold)
    return int(below[0]) if below.size else None


@dataclass(frozen=True)
class Rate:
    """Fit of log10(loss) against iteration over the last decades of a curve.

    Attributes:
        start: First iteration of the fitted window.
        slope: Decades of loss per 1000 iterations over the window (negative: falling).
        early: The same over the first half of the window.
        late: The same over the second half.
        verdict: ``linear`` (straight on a log plot: late/early within [1/2, 2]),
            ``sublinear`` (the fall slows: late < early / 2), ``accelerating`` (a
            plateau left late in the window) or ``stalled`` (the whole curve fell by
            less than the decades asked for).
    """

    start: int
    slope: float
    early: float
    late: float
    verdict: str


def _slope(iterations: np.ndarray, log_losses: np.ndarray) -> float:
    """Least-squares slope in decades per 1000 iterations."""
    if iterations.size < 2:
        return 0.0
    return float(np.polyfit(iterations, log_losses, 1)[0] * 1000)


def fit_rate(losses: np.ndarray, decades: float = 3.0) -> Rate:
    """Fits the rate of the last ``decades`` decades of a loss curve.

    The window runs from the last iteration whose loss is at least the final loss times
    10**decades to the end, so a curve that is still stuck at the end of the run is
    fitted over its plateau and the fall before it.

    Args:
        losses: The loss curve.
        decades: How many decades above the final loss the window reaches.

    Returns:
        The fit, its two halves and the verdict.
    """
    log_losses = np.log10(np.maximum(losses, 1e-300))
    above = np.flatnonzero(log_losses >= log_losses[-1] + decades)
    start = int(above[-1]) if above.size else 0
    iterations = np.arange(start, losses.size)
    window = log_losses[start:]
    half = window.size // 2
    slope = _slope(iterations, window)
    early = _slope(iterations[: half + 1], window[: half + 1])
    late = _slope(iterations[half:], window[half:])
    if not above.size:
        verdict = "stalled"  # never fell by `decades` decades: no tail to judge
    elif early < 0 and late > early / 2:
        verdict = "sublinear"
    elif early < 0 and late < 2 * early:
        verdict = "accelerating"
    else:
        verdict = "linear" if early < 0 else "flat"
    return Rate(start, slope, early, late, verdict)


def summarise_iterations(values: Sequence[int | None], limit: int) -> str:
    """Mean +- std (min-max) of iteration counts, naming the seeds that never got there."""
    reached = [v for v in values if v is not None]
    if not reached:
        return f"not reached in {limit}"
    text = f"{np.mean(reached):.0f} ± {np.std(reached):.0f} ({min(reached)}–{max(reached)})"
    if len(reached) < len(values):
        text += f"; {len(values) - len(reached)}/{len(values)} seeds not in {limit}"
    return text


def count_verdicts(verdicts: Sequence[str]) -> str:
    """How many runs got each verdict, e.g. "linear 4/5, sublinear 1/5"."""
    return ", ".join(f"{v} {verdicts.count(v)}/{len(verdicts)}" for v in sorted(set(verdicts)))


def run_depth(
    num_layers: int, layouts: Sequence[Layout], seeds: Sequence[int], settings: Settings
) -> dict[str, list[Run]]:
    """Trains every layout from every seed at one depth, printing progress."""
    runs: dict[str, list[Run]] = {}
    for layout in layouts:
        started = time.perf_counter()
        runs[layout.name] = [train(layout, num_layers, seed, settings) for seed in seeds]
        finals = ", ".join(f"{r.losses[-1]:.1e}" for r in runs[layout.name])
        elapsed = time.perf_counter() - started
        print(f"K={num_layers} {layout.name:28s} final losses {finals} ({elapsed:.1f}s)")
    return runs


def plot_depth(runs: dict[str, list[Run]], num_layers: int, settings: Settings, path: Path) -> None:
    """Log-scale loss against iteration, full run and the first iterations, every layout."""
    figure = Figure(figsize=(13, 5))  # drawn by Agg on savefig, no pyplot state
    axes = figure.subplots(1, 2)
    zoom = 600
    for index, (name, layout_runs) in enumerate(runs.items()):
        color = matplotlib.colormaps["tab10"](index % 10)
        for k, run in enumerate(layout_runs):
            style = {"color": color, "lw": 1.6 if k == 0 else 0.6, "alpha": 1.0 if k == 0 else 0.4}
            label = name if k == 0 else None
            axes[0].plot(run.losses, label=label, **style)
            axes[1].plot(run.losses[:zoom], **style)
    for axis in axes:
        axis.set_yscale("log")
        axis.axhline(1e-6, color="grey", ls=":", lw=0.8)
        axis.set_xlabel("gradient-descent iteration")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("loss 1/2 ||h_K - Y||²")
    axes[0].set_title(f"K={num_layers} layers, d={settings.dim}, init {settings.init_scale:g}")
    axes[1].set_title(f"first {zoom} iterations (seed 0 bold, other seeds faint)")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def depth_report(
    runs: dict[str, list[Run]], num_layers: int, settings: Settings, threshold: float
) -> list[str]:
    """Markdown: iterations to the threshold, fitted rates, learned Ancre matrices."""
    lines = [
        f"### K = {num_layers} layers",
        "",
        f"| layout | iterations to {threshold:g}: mean ± std (min–max) | final loss (median) "
        "| rate, last 3 decades (decades/1k it) | late/early slope | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name, layout_runs in runs.items():
        reached = [iterations_to(r.losses, threshold) for r in layout_runs]
        rates = [fit_rate(r.losses) for r in layout_runs]
        slopes = [r.slope for r in rates]
        ratios = [r.late / r.early if r.early < 0 else float("nan") for r in rates]
        verdict = count_verdicts([r.verdict for r in rates])
        final = float(np.median([r.losses[-1] for r in layout_runs]))
        lines.append(
            f"| {name} | {summarise_iterations(reached, settings.iterations)} | {final:.1e} "
            f"| {np.mean(slopes):.3g} ± {np.std(slopes):.2g} | {np.nanmedian(ratios):.3g} "
            f"| {verdict} |"
        )
    for name, layout_runs in runs.items():
        if layout_runs[0].layout.kind != "ancre":
            continue
        lines += ["", f"Learned connection matrix, {name}, seed {layout_runs[0].seed}:", ""]
        lines += matrix_table(layout_runs[0].matrix, markdown=True, digits=2).splitlines()
        lines += ["", f"Mean over {len(layout_runs)} seeds:", ""]
        mean = np.mean([r.matrix for r in layout_runs], axis=0)
        lines += matrix_table(mean, markdown=True, digits=2).splitlines()
    return lines + [""]


def write_csv(all_runs: dict[int, dict[str, list[Run]]], threshold: float, path: Path) -> None:
    """One row per (depth, layout, seed): iterations to threshold, final loss, fitted rate."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["layers", "layout", "seed", f"iterations_to_{threshold:g}", "iterations_run",
             "final_loss", "rate_decades_per_1k", "early", "late", "verdict"]
        )  # fmt: skip
        for num_layers, runs in all_runs.items():
            for name, layout_runs in runs.items():
                for run in layout_runs:
                    rate = fit_rate(run.losses)
                    reached = iterations_to(run.losses, threshold)
                    writer.writerow(
                        [num_layers, name, run.seed, "" if reached is None else reached,
                         run.losses.size, f"{run.losses[-1]:.3e}", f"{rate.slope:.4g}",
                         f"{rate.early:.4g}", f"{rate.late:.4g}", rate.verdict]
                    )  # fmt: skip


def sweep(
    depths: Sequence[int],
    temperatures: Sequence[float],
    multipliers: Sequence[float],
    seeds: Sequence[int],
    settings: Settings,
    threshold: float,
) -> list[str]:
    """Ancre over a grid of tau and logit multipliers, beside uniform: markdown lines.

    Under plain gradient descent from zero logits the softmax inputs z = theta / tau move
    by lr * mult / tau**2 times dL/dz, so the grid's columns collapse onto one gain,
    mult / tau**2, which the table prints.
    """
    lines = [
        f"| layers | tau | mult | gain mult/tau² | iterations to {threshold:g} "
        "| final loss (median) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for num_layers in depths:
        uniform = [train(Layout("uniform", "uniform"), num_layers, s, settings) for s in seeds]
        reached = [iterations_to(r.losses, threshold) for r in uniform]
        final = float(np.median([r.losses[-1] for r in uniform]))
        summary = summarise_iterations(reached, settings.iterations)
        lines.append(f"| {num_layers} | uniform | – | 0 | {summary} | {final:.1e} | |")
        for tau in temperatures:
            for mult in multipliers:
                layout = Layout(f"ancre tau={tau:g} mult={mult:g}", "ancre", "", tau, mult)
                started = time.perf_counter()
                runs = [train(layout, num_layers, s, settings) for s in seeds]
                reached = [iterations_to(r.losses, threshold) for r in runs]
                verdict = count_verdicts([fit_rate(r.losses).verdict for r in runs])
                final = float(np.median([r.losses[-1] for r in runs]))
                lines.append(
                    f"| {num_layers} | {tau:g} | {mult:g} | {mult / tau**2:g} "
                    f"| {summarise_iterations(reached, settings.iterations)} | {final:.1e} "
                    f"| {verdict} |"
                )
                elapsed = time.perf_counter() - started
                print(f"sweep K={num_layers} tau={tau:g} mult={mult:g}: {reached} ({elapsed:.1f}s)")
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line settings; the defaults regenerate docs/science.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for PNGs and tables")
    parser.add_argument("--depths", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--dim", type=int, default=Settings.dim)
    parser.add_argument("--samples", type=int, default=Settings.samples)
    parser.add_argument("--target-seed", type=int, default=Settings.target_seed)
    parser.add_argument("--init-scale", type=float, default=Settings.init_scale)
    parser.add_argument("--lr", type=float, default=Settings.lr)
    parser.add_argument("--iterations", type=int, default=Settings.iterations)
    parser.add_argument("--stop-loss", type=float, default=Settings.stop_loss)
    parser.add_argument("--threshold", type=float, default=1e-6)
    parser.add_argument(
        "--ancre",
        nargs="+",
        default=["0.01:1", "0.1:0.1"],
        help="Ancre layouts of the main comparison, each tau:logit_lr_mult",
    )
    parser.add_argument("--sweep-taus", type=float, nargs="+", default=[1.0, 0.1, 0.01])
    parser.add_argument("--sweep-mults", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--sweep-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-sweep", action="store_true", help="skip the tau/multiplier sweep")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the comparison (and the sweep) and writes the figures and tables."""
    args = parse_args(argv)
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead
    settings = Settings(
        dim=args.dim,
        samples=args.samples,
        target_seed=args.target_seed,
        init_scale=args.init_scale,
        lr=args.lr,
        iterations=args.iterations,
        stop_loss=args.stop_loss,
    )
    ancre_settings = [tuple(float(x) for x in item.split(":")) for item in args.ancre]
    args.out.mkdir(parents=True, exist_ok=True)
    inputs, targets = make_problem(settings)
    singular = torch.linalg.svdvals(targets @ inputs.T).numpy()  # of A, since X X^T = I
    report = [
        "# Deep linear networks wired by ancre.model.topology",
        "",
        f"Settings: {settings}, seeds {args.seeds}.",
        f"Singular values of A: max {singular.max():.3f}, min {singular.min():.4f}.",
        "",
    ]
    all_runs = {}
    for num_layers in args.depths:
        layouts = default_layouts(num_layers, ancre_settings)
        runs = run_depth(num_layers, layouts, args.seeds, settings)
        all_runs[num_layers] = runs
        plot_depth(runs, num_layers, settings, args.out / f"deep_linear_K{num_layers}.png")
        report += depth_report(runs, num_layers, settings, args.threshold)
    write_csv(all_runs, args.threshold, args.out / "deep_linear_runs.csv")
    if not args.no_sweep:
        report += [f"### Sweep of tau and the logit multiplier (seeds {args.sweep_seeds})", ""]
        report += sweep(
            args.depths,
            args.sweep_taus,
            args.sweep_mults,
            args.sweep_seeds,
            settings,
            args.threshold,
        )
    (args.out / "deep_linear.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
