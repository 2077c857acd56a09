"""Compiles every Triton kernel of ancre/kernels for A100 and H100 and reports what runs.

    python tools/kernel_report.py [--target sm_80 --target sm_90]

One line per kernel, target and specialisation: registers and spilled bytes (ptxas),
shared memory, and the global loads and stores of tensor streams by width (narrow:
fewer than 16 bytes per thread; vector: 16). Needs no GPU: Triton compiles for a CUDA
target on any machine (ancre/kernels/aot.py). Exit code 1 when a kernel spills or
moves a stream with narrow operations.
"""

from __future__ import annotations

import argparse
import os
import sys

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("tools/kernel_report.py: unset TRITON_INTERPRET (the interpreter cannot compile)")

from ancre.kernels.aot import TARGETS, kernel_modules, reports  # noqa: E402


def main() -> int:
    """Prints the report; returns 1 when a kernel spills or has narrow stream operations."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), default=None)
    parser.add_argument("--streams", action="store_true", help="also list each stream's widths")
    args = parser.parse_args()
    bad = 0
    for module in kernel_modules():
        for item in reports(module.launches(), args.target or list(TARGETS)):
            print(item.line())
            if args.streams:
                for name, widths in sorted(item.streams.items()):
                    print(f"    {name}: {sorted(widths)} bytes per thread and instruction")
            bad += item.spills > 0 or item.narrow_stream_ops > 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
