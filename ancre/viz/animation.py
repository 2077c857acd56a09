"""The connection matrix over all snapshots of a run, as an animated GIF or an MP4."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from matplotlib.animation import FFMpegWriter, PillowWriter
from matplotlib.cm import ScalarMappable

from ancre.snapshot import TopologySnapshot
from ancre.viz.canvas import colormap, new_figure, shared_norm, snapshot_title
from ancre.viz.heatmap import COLORBAR_LABEL, draw_matrix
from ancre.viz.run_data import evenly_spaced

FRAMES_PER_SECOND = 4
MAX_FRAMES = 150
ANIMATION_DPI = 80


def ffmpeg_available() -> bool:
    """Whether an ``ffmpeg`` executable is on PATH (needed for MP4)."""
    return shutil.which("ffmpeg") is not None


def write_animation(
    snapshots: Sequence[TopologySnapshot],
    out_dir: str | Path,
    run_name: str = "",
    mp4: bool = False,
    stem: str = "topology_evolution",
) -> Path:
    """Writes one frame per snapshot (step and tokens in each) on a shared colour scale.

    Args:
        snapshots: The run's snapshots in step order; more than ``MAX_FRAMES`` are
            thinned evenly (first and last kept).
        out_dir: The folder to write into.
        run_name: Shown in each frame's title.
        mp4: Write an MP4 instead of a GIF; needs ffmpeg on PATH (else a GIF is written).
        stem: The file name without its suffix.

    Returns:
        The file written (``stem.mp4`` or ``stem.gif``).
    """
    frames = evenly_spaced(snapshots, MAX_FRAMES)
    use_mp4 = mp4 and ffmpeg_available()
    path = Path(out_dir) / f"{stem}.{'mp4' if use_mp4 else 'gif'}"
    num_layers = frames[0].num_layers
    size = 6.0 if num_layers <= 24 else 8.0
    figure = new_figure(size, size * 0.85, dpi=ANIMATION_DPI)
    ax = figure.add_subplot()
    norm = shared_norm(s.matrix for s in frames)
    figure.colorbar(ScalarMappable(norm, colormap()), ax=ax, label=COLORBAR_LABEL, shrink=0.85)
    writer = FFMpegWriter(fps=FRAMES_PER_SECOND) if use_mp4 else PillowWriter(fps=FRAMES_PER_SECOND)
    prefix = f"{run_name}: " if run_name else ""
    with writer.saving(figure, str(path), dpi=ANIMATION_DPI):
        for snapshot in frames:
            ax.clear()
            draw_matrix(ax, snapshot.matrix, norm)
            ax.set_title(f"{prefix}{snapshot_title(snapshot.step, snapshot.tokens)}", fontsize=10)
            writer.grab_frame(facecolor="white")
    return path
