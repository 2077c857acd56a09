"""Tests for ancre/data/troff.py: a small man page written here, stripped to prose."""

from __future__ import annotations

from ancre.data.troff import man_to_text, split_arguments

PAGE = r""".\" Copyright (c) 2024 Nobody
.\" SPDX-License-Identifier: Linux-man-pages-copyleft
.TH frob 3 2024-05-06 "Linux man-pages 6.03"
.SH NAME
frob \- turn a widget \(em gently
.SH LIBRARY
Standard C library
.RI ( libc ", " \-lc )
.SH SYNOPSIS
.nf
.B #include <frob.h>
.PP
.BI "int frob(int " fd );
.fi
.SH DESCRIPTION
The
.BR frob ()
function turns the widget referred to by
.IR fd .
It never
.B blocks
\(lqfor long\(rq.   \" a comment
.PP
A second paragraph, with \fBbold\fP and \fIitalic\fR words,
a backslash \e and a non\-breaking\~space.
.TP
.B EINVAL
The widget is not frobbable.
.IP \(bu 2
A bulleted point.
.SS Historic notes
.de XX
.B this macro body is not text
..
.if n \{\
.B neither is this
.\}
.EX
int main(void) { return frob(0); }
.EE
.TS
l l.
table	cells
.TE
See
.UR https://example.org/
the example
.UE .
"""

EXPECTED = """NAME
frob - turn a widget \u2014 gently
LIBRARY
Standard C library (libc, -lc)
DESCRIPTION
The frob() function turns the widget referred to by fd. It never blocks \u201cfor long\u201d.
A second paragraph, with bold and italic words, a backslash \\ and a non-breaking space.
EINVAL
The widget is not frobbable.
\u2022 A bulleted point.
Historic notes
See the example."""


def test_troff_markup_is_stripped_to_prose() -> None:
    page = man_to_text(PAGE)
    assert (page.name, page.section, page.date) == ("frob", "3", "2024-05-06")
    assert page.text == EXPECTED


def test_an_alias_page_is_skipped() -> None:
    assert man_to_text(".so man3/frob.3\n") is None


def test_quoted_arguments() -> None:
    split = split_arguments
    assert split('"int frob(int " fd );') == ["int frob(int ", "fd", ");"]
    assert split('a "say ""hi""" b') == ["a", 'say "hi"', "b"]
