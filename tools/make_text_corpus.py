"""Build a real-English corpus in the allenai/c4 format from Debian's English man pages.

The sample corpus (``data/sample``) comes from a small grammar; this one is real
technical English: the man pages of the Debian packages ``manpages`` (sections 1, 4-8:
files, devices, conventions, administration) and ``manpages-dev`` (sections 2 and 3:
system calls and library functions). The packages are fetched with ``apt-get
download`` into a temporary folder (or read from ``--debs`` files), unpacked with
``dpkg -x``, and every English page (``usr/share/man/man*/``; alias pages that only
``.so``-include another are skipped) becomes one document: its troff markup stripped to
plain prose, paragraphs on their own lines. Example programs (``.EX``/``.EE``), tables
(``.TS``/``.TE``) and SYNOPSIS sections (C declarations) are left out.

Documents are sorted by page, shuffled with ``--seed`` and split into validation (the
first ``--validation-fraction``) and train; the shards are gzipped JSON lines with
C4's keys (text, url, timestamp: the page's date from its ``.TH`` line), written
byte-reproducibly. The packages' copyright files (the pages are GPL-2+ and other free
licences, see there) are copied into the output folder beside ``corpus.json``, which
records the packages, their versions and what was written.

The output folder must be new or empty: the tool refuses any other (it never deletes
anything), and writes into a temporary folder beside it that is renamed into place at
the end, so an interrupted build leaves nothing half written.

Example:
    python tools/make_text_corpus.py --out data/text
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ancre.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from ancre.data.troff import ManPage, man_to_text

PACKAGES = ("manpages", "manpages-dev")
MARKER = "corpus.json"
NO_MIRROR = 3
"""Exit status when ``apt-get download`` cannot fetch a package (no mirror reachable)."""

# --- packages ---


class NoMirror(RuntimeError):
    """``apt-get download`` could not fetch a package."""


def download(packages: Sequence[str], folder: Path) -> list[Path]:
    """Fetches the .deb files of ``packages`` into ``folder`` with ``apt-get download``.

    Raises:
        NoMirror: apt-get is missing or could not fetch them (its message is kept).
    """
    if shutil.which("apt-get") is None:
        raise NoMirror("apt-get is not installed here; pass .deb files with --debs")
    result = subprocess.run(
        ["apt-get", "download", *packages], cwd=folder, capture_output=True, text=True
    )
    debs = sorted(folder.glob("*.deb"))
    if result.returncode != 0 or len(debs) != len(packages):
        message = (result.stderr or result.stdout).strip().splitlines()
        raise NoMirror(
            f"apt-get download {' '.join(packages)} failed ({'; '.join(message[-3:])}); "
            "check the apt sources (apt-get update) or pass .deb files with --debs"
        )
    return debs


def package_info(deb: Path) -> tuple[str, str]:
    """The package name and version of a .deb file (``dpkg-deb --field``)."""
    result = subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Package", "Version"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{deb}: not a readable .deb file ({result.stderr.strip()})")
    fields = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    return fields["Package"], fields["Version"]


def unpack(deb: Path, folder: Path) -> None:
    """Unpacks a .deb's files into ``folder`` (``dpkg -x``).

    Raises:
        SystemExit: dpkg failed (not a .deb file, say); its message is kept.
    """
    folder.mkdir(parents=True)
    result = subprocess.run(["dpkg", "-x", str(deb), str(folder)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"dpkg -x {deb} failed: {result.stderr.strip()}")


def english_pages(tree: Path) -> list[Path]:
    """The English man page files of an unpacked package, in name order (links left out)."""
    pages = tree.glob("usr/share/man/man*/*")
    return sorted(p for p in pages if p.is_file() and not p.is_symlink())


def read_page(path: Path) -> str:
    """A man page's source, gunzipped when it ends in .gz."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def copyright_file(trees: dict[str, Path], package: str) -> Path:
    """The copyright file of a package, following a doc folder linked to another package's."""
    doc = trees[package] / "usr/share/doc" / package
    if doc.is_symlink():
        target = os.readlink(doc).rstrip("/").split("/")[-1]
        if target in trees:
            doc = trees[target] / "usr/share/doc" / target
    path = doc / "copyright"
    if not path.is_file():
        raise FileNotFoundError(f"{package}: no copyright file in the package ({path})")
    return path


# --- output ---


def check_output(out: Path) -> None:
    """Refuses an output folder that exists and holds anything, or is not a folder."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out}: exists and is not a folder; choose a new folder")
    if out.is_dir() and any(out.iterdir()):
        made_here = (out / MARKER).is_file()
        hint = (
            "it holds a corpus this tool built; delete the folder yourself to rebuild it"
            if made_here
            else "choose a new or empty folder (nothing is ever deleted or overwritten)"
        )
        raise SystemExit(f"--out {out}: the folder is not empty; {hint}")


def shard(records: Sequence[dict[str, str]]) -> bytes:
    """Records as gzipped JSON lines, byte-reproducibly (no file name or time in the header)."""
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    return gzip.compress(lines.encode("utf-8"), mtime=0)


def record(page: ManPage, path: Path) -> dict[str, str]:
    """The C4 record of a page: text, url, timestamp (its .TH date, else the file's)."""
    day = page.date or dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).date()
    name, section = page.name or path.name.split(".")[0], page.section or path.parent.name[3:]
    return {
        "text": page.text,
        "url": f"https://manpages.debian.org/{name.lower()}.{section}",
        "timestamp": f"{day}T00:00:00Z",
    }


def build(args: argparse.Namespace, work: Path, staging: Path) -> dict:
    """Fetches, unpacks and converts the pages, and writes the corpus into ``staging``."""
    if args.debs:
        debs = [Path(d).resolve() for d in args.debs]
    else:
        (work / "debs").mkdir()
        debs = download(args.packages, work / "debs")
    trees: dict[str, Path] = {}
    versions: dict[str, str] = {}
    for deb in debs:
        package, version = package_info(deb)
        trees[package] = work / "tree" / package
        unpack(deb, trees[package])
        versions[package] = version
    documents: list[tuple[str, dict[str, str]]] = []
    aliases = empty = 0
    for tree in (trees[package] for package in sorted(trees)):
        for path in english_pages(tree):
            page = man_to_text(read_page(path))
            if page is None:
                aliases += 1
            elif len(page.text) < args.min_chars:
                empty += 1
            else:
                documents.append((f"{path.parent.name}/{path.name}", record(page, path)))
    if not documents:
        raise SystemExit(f"no English man pages found in {', '.join(map(str, debs))}")
    documents.sort(key=lambda item: item[0])
    rng = random.Random(args.seed)
    rng.shuffle(documents)
    count = max(1, round(len(documents) * args.validation_fraction))
    splits = {"validation": documents[:count], "train": documents[count:]}
    written: dict[str, dict] = {}
    for split, docs in splits.items():
        shards = args.train_shards if split == "train" else 1
        for i in range(shards):
            name = f"c4-{split}.{i:05d}-of-{shards:05d}.json.gz"
            part = [r for _, r in docs[i::shards]]
            write_bytes_atomic(staging / name, shard(part))
            written[name] = {
                "documents": len(part),
                "characters": sum(len(r["text"]) for r in part),
            }
    for package in sorted(trees):
        shutil.copyfile(copyright_file(trees, package), staging / f"copyright.{package}")
    summary = {
        "source": "Debian packages " + ", ".join(f"{p} {v}" for p, v in sorted(versions.items())),
        "packages": versions,
        "seed": args.seed,
        "validation_fraction": args.validation_fraction,
        "documents": len(documents),
        "characters": sum(s["characters"] for s in written.values()),
        "alias_pages_skipped": aliases,
        "short_pages_skipped": empty,
        "shards": written,
        "licence": "the pages' licences are in the copyright.* files of this folder",
    }
    write_json_atomic(staging / MARKER, summary)
    write_text_atomic(
        staging / "README",
        "English man pages of the Debian packages "
        + ", ".join(f"{p} {v}" for p, v in sorted(versions.items()))
        + ", as plain text in the C4 format; built by tools/make_text_corpus.py "
        f"(--seed {args.seed}). Licences: copyright.* in this folder.\n",
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    """Parses the arguments, builds the corpus and prints what it wrote.

    Returns:
        0, or :data:`NO_MIRROR` when the packages could not be downloaded.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/text"), help="new or empty folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    parser.add_argument("--validation-fraction", type=float, default=0.05,
                        help="fraction of the pages kept for validation")  # fmt: skip
    parser.add_argument("--train-shards", type=int, default=4, help="number of train files")
    parser.add_argument("--min-chars", type=int, default=200,
                        help="pages shorter than this after stripping are left out")  # fmt: skip
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES),
                        help="Debian packages to take the pages of")  # fmt: skip
    parser.add_argument("--debs", nargs="+", help=".deb files to use instead of downloading")
    args = parser.parse_args(argv)
    if not 0 < args.validation_fraction < 1:
        parser.error(f"--validation-fraction is {args.validation_fraction}; it must be in (0, 1)")
    if args.train_shards < 1:
        parser.error(f"--train-shards is {args.train_shards}; it must be at least 1")
    out = args.out.resolve()
    check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="make_text_corpus.") as work:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            summary = build(args, Path(work), staging)
            check_output(out)  # nobody wrote there meanwhile
            if out.is_dir():
                out.rmdir()  # empty: checked just above
            staging.chmod(0o755)
            staging.rename(out)
        except NoMirror as error:
            print(f"make_text_corpus: {error}", file=sys.stderr)
            return NO_MIRROR
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    for name, numbers in summary["shards"].items():
        print(f"wrote {out / name} ({numbers['documents']} documents, "
              f"{numbers['characters']:,} characters)")  # fmt: skip
    print(
        f"{summary['documents']} documents, {summary['characters']:,} characters in "
        f"{len(summary['shards'])} shards from {summary['source']} "
        f"({summary['alias_pages_skipped']} alias pages and {summary['short_pages_skipped']} "
        f"pages under {args.min_chars} characters left out); licences in {out}/copyright.*"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
