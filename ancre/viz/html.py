"""The self-contained report page: images embedded as base64 data URIs, no network."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

MIME_TYPES = {".png": "image/png", ".gif": "image/gif", ".svg": "image/svg+xml"}
STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f2f2f2; } td.text { text-align: left; }
p.note { color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Section:
    """One part of the report: a heading, an optional image, a caption and tables."""

    title: str
    image: Path | None = None
    caption: str = ""
    link: Path | None = None


def data_uri(path: str | Path) -> str:
    """The file as a ``data:`` URI (PNG, GIF or SVG)."""
    path = Path(path)
    mime = MIME_TYPES[path.suffix.lower()]
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _cell(value: object) -> str:
    if isinstance(value, float):
        text, kind = ("" if value != value else f"{value:.4g}"), ""
    else:
        text, kind = str(value), ' class="text"' if not isinstance(value, int) else ""
    return f"<td{kind}>{escape(text)}</td>"


def table(rows: Sequence[Mapping[str, object]]) -> str:
    """An HTML table with one column per key of the first row."""
    if not rows:
        return "<p class='note'>(none)</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c, "")) for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_page(
    title: str,
    summary: Sequence[Mapping[str, object]],
    sections: Sequence[Section],
    statistics: Sequence[Mapping[str, object]],
    notes: Sequence[str] = (),
) -> str:
    """The full HTML document of a report.

    Args:
        title: Page title and heading.
        summary: Rows of the run summary table (one row per run).
        sections: Figures in order; their images are embedded.
        statistics: Rows of the final per-block statistics table.
        notes: Lines shown under the summary (comparisons, warnings).

    Returns:
        The document, which needs no other file and no network.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        "<h2>Run summary</h2>",
        table(summary),
        *(f"<p>{escape(note)}</p>" for note in notes),
    ]
    for section in sections:
        parts.append(f"<h2>{escape(section.title)}</h2>")
        if section.image is not None:
            parts.append(f'<img src="{data_uri(section.image)}" alt="{escape(section.title)}">')
        if section.link is not None:
            name = escape(section.link.name)
            parts.append(f'<p><a href="{name}">{name}</a> (next to this page)</p>')
        if section.caption:
            parts.append(f"<p class='note'>{escape(section.caption)}</p>")
    parts += ["<h2>Per-block statistics (shown step)</h2>", table(statistics), "</body></html>"]
    return "\n".join(parts) + "\n"
