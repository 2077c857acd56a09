"""Figures drawn off-screen with matplotlib's Agg backend, shared colour scales, saving.

Figures are made with the object API (``Figure`` + ``FigureCanvasAgg``), never through
pyplot, so nothing opens a window and nothing piles up in a global figure list.
Figures are saved at their own size (no tight bounding box), so a point of an axes
maps to a known pixel of the PNG: ``ax.transData.transform((x, y))``, y from the bottom.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.text import Text

DPI = 100
MIN_FONT_PT = 9.0
"""No text of a saved figure is smaller than this (points, at the saved size)."""
FORMATS = ("png", "pdf", "svg")
COLORMAP = "viridis"  # luminance grows monotonically with the value
MASK_COLOUR = "white"  # cells above the diagonal
EMPTY_TEXT = "all-zero matrix (cascaded): no connections beyond the plain chain"


def new_figure(width: float, height: float, dpi: int = DPI) -> Figure:
    """A figure of ``width`` x ``height`` inches on an Agg canvas, constrained layout."""
    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def colormap() -> Colormap:
    """The colour map of connection weights, with masked cells drawn in white."""
    return matplotlib.colormaps[COLORMAP].with_extremes(bad=MASK_COLOUR)


def shared_norm(matrices: Iterable[Sequence[Sequence[float]] | np.ndarray]) -> Normalize:
    """One colour scale for several matrices: from min(0, smallest) to the largest value.

    An all-zero set (cascaded) gets the scale 0..1, so it is drawn as "nothing".
    """
    low, high = 0.0, 0.0
    for matrix in matrices:
        array = np.asarray(matrix, dtype=np.float64)
        if array.size:
            low, high = min(low, float(array.min())), max(high, float(array.max()))
    if high <= low:
        high = low + 1.0
    return Normalize(vmin=low, vmax=high)


def is_all_zero(matrix: Sequence[Sequence[float]] | np.ndarray) -> bool:
    """Whether a connection matrix has no weight at all (a cascaded run)."""
    return not np.any(np.asarray(matrix, dtype=np.float64))


def luminance(rgba: Sequence[float]) -> float:
    """Relative luminance (0 black .. 1 white) of an RGB(A) colour with channels in 0..1."""
    r, g, b = rgba[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def save_figure(
    figure: Figure,
    out_dir: str | Path,
    stem: str,
    formats: Sequence[str] = ("png",),
    dpi: int | None = None,
    titles: bool = True,
) -> list[Path]:
    """Saves a figure in each format at its own size; no text below :data:`MIN_FONT_PT`.

    Args:
        figure: The figure.
        out_dir: Where to write.
        stem: The file name without suffix.
        formats: Any of ``png``, ``pdf``, ``svg``; the first is the one a report shows.
        dpi: Resolution of raster output (None: the figure's own).
        titles: Keep the titles (False drops them, for a paper's own captions).

    Returns:
        The files written, in the order of ``formats``.
    """
    if not titles:
        for ax in figure.axes:
            ax.set_title("")
        figure.suptitle("")
    raise_small_fonts(figure)
    out_dir = Path(out_dir)
    paths = [out_dir / f"{stem}.{suffix}" for suffix in formats]
    for path in paths:
        figure.savefig(path, dpi=dpi or figure.dpi, facecolor="white")
    return paths


def raise_small_fonts(figure: Figure, smallest: float = MIN_FONT_PT) -> None:
    """Sets every text of a figure (tick labels included) to at least ``smallest`` points."""
    figure.canvas.draw()  # makes the tick labels
    for text in figure.findobj(Text):
        if text.get_fontsize() < smallest:
            text.set_fontsize(smallest)
    for ax in figure.axes:
        ax.tick_params(labelsize=max(smallest, _tick_size(ax)))


def _tick_size(ax: object) -> float:
    labels = ax.get_xticklabels() + ax.get_yticklabels()  # type: ignore[attr-defined]
    return max((label.get_fontsize() for label in labels), default=MIN_FONT_PT)


def plain(value: float, digits: int = 2) -> str:
    """A number with ``digits`` decimals, never ``-0.00``."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def format_tokens(tokens: int) -> str:
    """A token count for titles: 409600 -> '410k', 1.3e9 -> '1.30B'."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if tokens >= size:
            value = tokens / size
            return f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return str(tokens)


def snapshot_title(step: int, tokens: int) -> str:
    """The caption of a matrix at one point of training."""
    return f"step {step} · {format_tokens(tokens)} tokens"
