r"""Man pages (troff with the man macros) stripped to plain prose, one document a page.

:func:`man_to_text` keeps the text a reader sees: section headings and paragraphs each
on a line of their own, fonts and escapes resolved (``\(em`` is an em dash, ``\-`` a
hyphen), ``.TP`` tags on their own line, links as their text. It leaves out what is not
prose: comments, macro definitions, conditionals, example programs (``.EX``/``.EE``),
tables (``.TS``/``.TE``) and SYNOPSIS sections (C declarations). A page that only
``.so``-includes another (an alias) gives None. ``tools/make_text_corpus.py`` builds the
real-English corpus with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

NAMED_CHARACTERS = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "aq": "'", "dq": '"',
    "lq": "\u201c", "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "bu": "\u2022",
    "co": "\u00a9", "rg": "\u00ae", "tm": "\u2122", "mu": "\u00d7", "di": "\u00f7",
    "<=": "\u2264", ">=": "\u2265", "!=": "\u2260", "==": "\u2261", "+-": "\u00b1",
    "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "ga": "`", "aa": "\u00b4", "ul": "_",
    "pl": "+", "eq": "=", "lh": "\u261c", "rh": "\u261e", "->": "\u2192", "<-": "\u2190",
    "de": "\u00b0", "ct": "\u00a2", "Po": "\u00a3", "Eu": "\u20ac", "sc": "\u00a7",
    "ps": "\u00b6", "dg": "\u2020", "fm": "\u2032", "sq": "\u25a1", "lB": "[", "rB": "]",
    "lC": "{", "rC": "}", "la": "\u27e8", "ra": "\u27e9", "or": "|", "at": "@", "sh": "#",
    "Fo": "\u00ab", "Fc": "\u00bb", "a\"": "\u02dd", ":a": "\u00e4", ":o": "\u00f6",
    ":u": "\u00fc", ":A": "\u00c4", ":O": "\u00d6", ":U": "\u00dc", "ss": "\u00df",
    "'e": "\u00e9", "`e": "\u00e8", "'a": "\u00e1", "`a": "\u00e0", "'o": "\u00f3",
    ",c": "\u00e7", "~n": "\u00f1", "^o": "\u00f4", "^e": "\u00ea", "'E": "\u00c9",
}  # fmt: skip
STRINGS = {"lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122", "S": ""}
SIMPLE_ESCAPES = {
    "e": "\\", "\\": "\\", "-": "-", "&": "", ":": "", "%": "", "|": "", "^": "", "/": "",
    ",": "", ")": "", "~": " ", " ": " ", "0": " ", "t": " ", "`": "`", "'": "\u00b4",
    ".": ".", "c": "", "{": "", "}": "", "!": "", "p": "", "r": "", "d": "", "u": "",
    "a": "", "E": "", "z": "", "\n": "",
}  # fmt: skip
ESCAPE = re.compile(
    r"""\\(?:
        (?P<font>f(?:\[[^\]]*\]|\(..|.))
      | (?P<named>\((?P<two>..)|\[(?P<long>[^\]]*)\])
      | (?P<string>\*(?:\((?P<s2>..)|\[(?P<sl>[^\]]*)\]|(?P<s1>.)))
      | (?P<register>[nk](?:\(..|\[[^\]]*\]|.))
      | (?P<size>s[-+]?(?:\d\d?|\(\d\d|\[\d+\]))
      | (?P<quoted>[whvlLNDbCoxXZSHAR]'[^']*')
      | (?P<simple>.|\n|$)
    )""",
    re.VERBOSE,
)
PARAGRAPH = {"PP", "P", "LP", "sp", "IP", "TP", "TQ", "HP", "RS", "RE", "SY", "YS", "br", "in"}
FONT_ALTERNATING = {"BR", "RB", "IR", "RI", "BI", "IB"}
FONT_WORDS = {"B", "I", "SM", "SB"}
DROPPED_SECTIONS = {"SYNOPSIS"}


@dataclass(frozen=True)
class ManPage:
    """One man page turned into prose.

    Attributes:
        name: The page's name (``signal``).
        section: Its section (``7``).
        date: The date of its ``.TH`` line as YYYY-MM-DD, or None.
        text: The prose: a heading or paragraph per line.
    """

    name: str
    section: str
    date: str | None
    text: str


def unescape(text: str) -> str:
    r"""Replaces troff escapes in a line of text by the characters they print.

    Font changes, sizes, number registers and motions print nothing; named characters
    (``\(em``, ``\[lq]``) and strings (``\*(lq``) become their Unicode characters
    (unknown ones print nothing); ``\-`` is a hyphen, ``\e`` a backslash.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group("named"):
            return NAMED_CHARACTERS.get(match.group("two") or match.group("long"), "")
        if match.group("string"):
            name = match.group("s2") or match.group("sl") or match.group("s1")
            return STRINGS.get(name, "")
        if match.group("simple") is not None:
            return SIMPLE_ESCAPES.get(match.group("simple"), match.group("simple"))
        return ""  # fonts, registers, sizes, widths, motions

    return ESCAPE.sub(replace, text)


def split_arguments(text: str) -> list[str]:
    """The arguments of a request line: words, or double-quoted strings (``""`` is ``"``)."""
    arguments: list[str] = []
    i = 0
    while i < len(text):
        if text[i] in " \t":
            i += 1
        elif text[i] == '"':
            j, word = i + 1, []
            while j < len(text):
                if text.startswith('""', j):
                    word.append('"')
                    j += 2
                elif text[j] == '"':
                    j += 1
                    break
                else:
                    word.append(text[j])
                    j += 1
            arguments.append("".join(word))
            i = j
        else:
            j = i
            while j < len(text) and text[j] not in " \t":
                j += 1
            arguments.append(text[i:j])
            i = j
    return arguments


def _without_comment(line: str) -> str:
    r"""The line up to a ``\"`` comment (an escaped backslash does not start one)."""
    i = 0
    while (i := line.find("\\", i)) != -1:
        if line.startswith('\\"', i) or line.startswith("\\#", i):
            return line[:i]
        i += 2
    return line


class _Prose:
    """Collects filled paragraphs and no-fill lines into a page's text."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.words: list[str] = []
        self.tag = False
        """The next text is the tag of a .TP paragraph: a line of its own."""

    def add(self, text: str, fill: bool) -> None:
        text = " ".join(unescape(text).split())
        if self.tag and text:
            fill, self.tag = False, False
        if not fill:
            self.flush()
            if text:
                self.lines.append(text)
        elif text:
            self.words.append(text)

    def attach(self, text: str) -> None:
        """Appends text to the last word (the punctuation after a link)."""
        text = unescape(text).strip()
        if self.words:
            self.words[-1] += text
        else:
            self.add(text, fill=True)

    def flush(self) -> None:
        if self.words:
            self.lines.append(" ".join(self.words))
            self.words = []

    def text(self) -> str:
        self.flush()
        return "\n".join(self.lines)


def _skip_block(lines: Iterator[str], end: Iterable[str]) -> None:
    """Consumes lines up to and including the first request in ``end``."""
    ends = tuple(end)
    for line in lines:
        if line.rstrip() in ends or any(line.startswith(e + " ") for e in ends):
            return


def _skip_conditional(first: str, lines: Iterator[str]) -> None:
    r"""Consumes a ``.if``/``.ie``/``.el`` request and, if it opens one, its ``\{...\}`` body."""
    depth = first.count("\\{") - first.count("\\}")
    while depth > 0:
        line = next(lines, None)
        if line is None:
            return
        depth += line.count("\\{") - line.count("\\}")


def man_to_text(source: str) -> ManPage | None:
    """Strips a man page's troff markup to plain prose.

    Args:
        source: The page's troff source (man macros).

    Returns:
        The page, or None for an alias page that only ``.so``-includes another.
    """
    name, section, date = "", "", None
    prose = _Prose()
    fill, dropping = True, False
    lines = iter(source.splitlines())
    for raw in lines:
        while raw.endswith("\\") and not raw.endswith("\\\\"):  # an escaped newline joins
            raw = raw[:-1] + next(lines, "")
        line = _without_comment(raw)
        if line[:1] not in (".", "'"):
            if not dropping:
                prose.add(line, fill)
                if not line.strip():
                    prose.flush()
            continue
        request, _, rest = line[1:].strip().partition(" ")
        arguments = split_arguments(rest)
        if request == "so":
            return None
        if request == "TH":
            name = arguments[0] if arguments else ""
            section = arguments[1] if len(arguments) > 1 else ""
            stamp = arguments[2] if len(arguments) > 2 else ""
            date = stamp if re.fullmatch(r"\d{4}-\d\d-\d\d", stamp) else None
        elif request in ("SH", "SS"):
            heading = " ".join(unescape(a) for a in arguments)
            if not heading:  # the heading is on the next line
                heading = unescape(next(lines, "")).strip()
            if request == "SH":
                dropping = heading.upper() in DROPPED_SECTIONS
            prose.flush()
            if not dropping:
                prose.add(heading, fill=False)
        elif dropping:
            continue
        elif request in ("EX", "TS"):
            prose.flush()
            _skip_block(lines, (".EE",) if request == "EX" else (".TE",))
        elif request == "de":
            _skip_block(lines, ("..",))
        elif request in ("if", "ie", "el"):
            _skip_conditional(line, lines)
        elif request in ("nf", "fi"):
            prose.flush()
            fill = request == "fi"
        elif request in PARAGRAPH:
            prose.flush()
            prose.tag = request in ("TP", "TQ")
            if request == "IP" and arguments and arguments[0]:
                prose.add(arguments[0], fill=True)  # a bullet or label starts the paragraph
        elif request in FONT_ALTERNATING:
            prose.add("".join(arguments), fill)
        elif request in FONT_WORDS or request in ("UR", "MT"):
            if request in FONT_WORDS:
                prose.add(" ".join(arguments), fill)
        elif request in ("UE", "ME"):
            prose.attach("".join(arguments))  # the punctuation after a link
        # every other request (.ad, .nh, .hy, .PD, .ft, .ta, .ne, ...) prints nothing here
    text = prose.text()
    return ManPage(name, section, date, text)
