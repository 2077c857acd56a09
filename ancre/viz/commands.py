"""The ``ancre viz`` subcommand: figures and report.html of a run's topology."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ancre.snapshot import SnapshotError
from ancre.viz.canvas import FORMATS
from ancre.viz.report import ReportOptions, write_report
from ancre.viz.run_data import VizError
from ancre.viz.wiring import DEFAULT_TOP_K

EXIT_BAD_INPUT = 2


def _steps(text: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected steps like 0,100,200, got {text!r}") from None


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declares the arguments of ``ancre viz``."""
    parser.add_argument("run_dir", type=Path, help="a run folder (or one topology snapshot file)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the report to")
    parser.add_argument(
        "--step", type=int, default=None, help="snapshot step to show (default: the latest)"
    )
    parser.add_argument("--svg", action="store_true", help="also write every figure as SVG")
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=FORMATS,
        default=None,
        help="figure format; repeat for several (default: png; pdf for papers)",
    )
    parser.add_argument(
        "--dpi", type=int, default=None, help="resolution of PNG figures (default: 100)"
    )
    parser.add_argument(
        "--no-title", action="store_true", help="figures without titles (captions are yours)"
    )
    parser.add_argument(
        "--compared-keys",
        default="topology.",
        metavar="KEY[,KEY]",
        help="config keys (or prefixes) the comparison is about; runs differing in others "
        "get a warning naming them (default: %(default)s)",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        default=[],
        metavar="RUN",
        help="other run folders whose loss curves are overlaid",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="NAME",
        help="run (folder name) whose final val_loss the others must reach "
        "(default: the first run)",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_TOP_K,
        help="arcs per block in the wiring diagram (default: %(default)s)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="draw every connection with |P| >= T instead of the top k",
    )
    parser.add_argument(
        "--mp4",
        action="store_true",
        help="write the animation as MP4 when ffmpeg is on PATH (else GIF)",
    )
    parser.add_argument(
        "--evolution-steps",
        type=_steps,
        default=None,
        metavar="S1,S2,...",
        help="snapshot steps of the small multiples (default: ~6 evenly spaced)",
    )


def run(command: str, args: argparse.Namespace) -> int:
    """Writes the report; bad input ends with ``ancre viz: error: ...`` and exit code 2.

    Returns:
        0 on success, 2 for bad input (missing folder, malformed snapshot, unknown step).
    """
    if args.top_k < 1:
        print("ancre viz: error: --top-k must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.dpi is not None and not 20 <= args.dpi <= 1200:
        print("ancre viz: error: --dpi must be between 20 and 1200", file=sys.stderr)
        return EXIT_BAD_INPUT
    options = ReportOptions(
        step=args.step,
        svg=args.svg,
        compare=args.compare,
        baseline=args.baseline,
        top_k=args.top_k,
        threshold=args.threshold,
        mp4=args.mp4,
        evolution_steps=args.evolution_steps,
        formats=args.formats or ["png"],
        dpi=args.dpi,
        titles=not args.no_title,
        compared_keys=[k.strip() for k in args.compared_keys.split(",") if k.strip()],
    )
    try:
        report = write_report(args.run_dir, args.out, options)
    except (VizError, SnapshotError) as error:
        print(f"ancre {command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in report.notes:
        print(line)
    print(f"wrote {len(report.files)} files to {args.out} (open {args.out / 'report.html'})")
    return 0
