"""Checks of a written report folder shared by the visualiser tests."""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread

CHROMIUM = Path("/usr/bin/chromium")
FIGURES = ("matrix", "evolution", "wiring", "block_stats_depth", "block_stats_training", "losses")
STREAM_FIGURES = ("stream_depth", "stream_training")
"""Drawn when the run's metrics hold the per-block statistics (train.block_stats_every)."""


class PageParser(HTMLParser):
    """Collects the <img> sources and every external reference of a page."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        for key in ("src", "href"):
            if (attrs.get(key) or "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[key])


def parse_page(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    return parser


def check_report(out: Path, svg: bool = False) -> PageParser:
    """Every figure exists, is non-blank PNG, and report.html embeds them all."""
    figures = FIGURES + tuple(s for s in STREAM_FIGURES if (out / f"{s}.png").exists())
    for stem in figures:
        image = imread(out / f"{stem}.png")
        assert image.shape[0] > 200 and image.shape[1] > 300, stem
        assert image[..., :3].var() > 0.005, f"{stem}.png is blank"
        assert (out / f"{stem}.svg").exists() == svg
    assert (out / "topology_evolution.gif").read_bytes()[:3] == b"GIF"
    assert (out / "block_statistics.csv").read_text().startswith("step,tokens,block,")
    page = parse_page((out / "report.html").read_text())
    assert len(page.images) == len(figures) + 1  # + the animation
    assert all(
        src.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for src in page.images
    )
    assert page.external == []
    return page


def check_in_chromium(html: Path, tmp_path: Path, expected_images: int) -> None:
    """Loads the page in headless Chromium (offline) and checks its DOM and a screenshot."""
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = parse_page(dom.stdout)
    assert len(page.images) == expected_images
    assert all(src.startswith("data:image/") for src in page.images)
    assert "ancre viz:" in dom.stdout and "</html>" in dom.stdout
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,2000", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert imread(shot)[..., :3].var() > 0.005, "the page renders blank"
