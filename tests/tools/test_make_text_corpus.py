"""Tests for tools/make_text_corpus.py: the corpus it writes from .deb files, refusals."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ancre.data.sources import find_shards, iter_documents
from tests.conftest import REPO

SCRIPT = REPO / "tools" / "make_text_corpus.py"
SPEC = importlib.util.spec_from_file_location("make_text_corpus", SCRIPT)
make_text_corpus = importlib.util.module_from_spec(SPEC)
sys.modules["make_text_corpus"] = make_text_corpus  # dataclasses look their module up by name
SPEC.loader.exec_module(make_text_corpus)


def make_deb(folder: Path, package: str, pages: dict[str, str]) -> Path:
    """A real .deb (dpkg-deb --build) holding man pages and a copyright file."""
    root = folder / package
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: test pages\n"
    )
    doc = root / "usr/share/doc" / package
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(f"Files: *\nLicense: GPL-2+ ({package})\n")
    for name, text in pages.items():
        path = root / "usr/share/man" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(text.encode()))
    deb = folder / f"{package}.deb"
    subprocess.run(["dpkg-deb", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


def page(name: str, words: int) -> str:
    body = " ".join(f"{name}word{i}" for i in range(words))
    return f'.TH {name} 7 2023-01-0{len(name) % 9 + 1} "test"\n.SH DESCRIPTION\n{body}\n'


needs_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed (not a Debian system)"
)


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO
    )


@needs_dpkg
def test_corpus_from_deb_files(tmp_path: Path) -> None:
    pages = {f"man7/p{i}.7.gz": page(f"p{i}", 60) for i in range(20)}
    pages["man7/alias.7.gz"] = ".so man7/p1.7\n"
    pages["de/man7/p0.7.gz"] = page("deutsch", 60)  # a translation: not English, left out
    deb = make_deb(tmp_path / "debs", "testpages", pages)
    out = tmp_path / "corpus"
    arguments = ["--debs", str(deb), "--validation-fraction", "0.2", "--train-shards", "2"]
    result = run_tool("--out", str(out), *arguments)
    assert result.returncode == 0, result.stderr
    assert "20 documents" in result.stdout and "1 alias pages" in result.stdout
    train = list(iter_documents(find_shards(str(out), "train"), "text", Counter()))
    validation = list(iter_documents(find_shards(str(out), "validation"), "text", Counter()))
    assert (len(train), len(validation)) == (16, 4)
    assert not set(train) & set(validation)
    assert all(text.startswith("DESCRIPTION\np") for text in train + validation)
    assert (out / "copyright.testpages").read_text() == "Files: *\nLicense: GPL-2+ (testpages)\n"
    record = json.loads(gzip.decompress(next(out.glob("c4-train.*")).read_bytes()).splitlines()[0])
    assert set(record) == {"text", "url", "timestamp"}
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["packages"] == {"testpages": "1.0-1"} and summary["documents"] == 20

    again = tmp_path / "again"
    assert run_tool("--out", str(again), *arguments).returncode == 0
    assert all(f.read_bytes() == (again / f.name).read_bytes() for f in out.iterdir())
    other_seed = tmp_path / "other"
    assert run_tool("--out", str(other_seed), *arguments, "--seed", "1").returncode == 0
    names = "c4-validation.00000-of-00001.json.gz"
    assert (other_seed / names).read_bytes() != (out / names).read_bytes()


@pytest.mark.parametrize("made_by_tool", [False, True])
def test_a_folder_with_files_is_refused_and_left_alone(tmp_path: Path, made_by_tool) -> None:
    out = tmp_path / "corpus"
    out.mkdir()
    (out / ("corpus.json" if made_by_tool else "notes.txt")).write_text("mine")
    result = run_tool("--out", str(out), "--debs", str(tmp_path / "none.deb"))
    assert result.returncode != 0 and "the folder is not empty" in result.stderr
    assert [p.name for p in out.iterdir()] == ["corpus.json" if made_by_tool else "notes.txt"]
    assert not list(tmp_path.glob(".corpus.*"))  # no staging folder left behind


@pytest.mark.slow
@needs_dpkg
def test_the_debian_man_pages_end_to_end(tmp_path: Path) -> None:
    """apt-get download of the real packages; skipped where no mirror answers."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not installed here")
    out = tmp_path / "text"
    result = run_tool("--out", str(out))
    if result.returncode == make_text_corpus.NO_MIRROR:
        pytest.skip(f"apt-get download cannot reach a mirror: {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "corpus.json").read_text())
    assert set(summary["packages"]) == {"manpages", "manpages-dev"}
    assert summary["documents"] > 500 and summary["characters"] > 1_000_000
    validation = list(iter_documents(find_shards(str(out), "validation"), "text", Counter()))
    assert validation and all("\\f" not in text and "\n.SH" not in text for text in validation)
    assert "GPL" in (out / "copyright.manpages").read_text()
