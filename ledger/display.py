"""Untrusted text made safe to show: page titles, URLs, case ids, names, file names, error messages.

Everything the tool prints is data someone else chose. A terminal obeys
escape sequences (ESC, the C1 controls), bidi controls (U+202E, U+200F)
reorder what a reader sees, and rich reads ``[...]`` as markup. So every
such string goes through one of these before it is shown:

``printable(s)``  control, format and bidi characters written as ``\\x1b``,
                  ``\\u202e``...; no other change. No rich needed: the
                  report writers (HTML, PDF, DOCX) use it too.
``shown(s)``      ``printable`` plus rich markup escaped: for f-strings handed
                  to ``Console.print`` or a ``Table`` cell.
``text(s)``       the same as a ``rich.text.Text`` (never parsed as markup).
``json_safe(j)``  JSON text with those characters as ``\\uXXXX`` escapes: the
                  same data once parsed, safe to land on a terminal.

Rich also turns ``:name:`` into emoji; the CLI's consoles are created with
``emoji=False`` for that, which no escaping here can replace.

A backslash is left as it is, so ``\\x1b`` typed literally looks like an
escaped ESC; ``--json`` output is exact when that matters.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.text import Text

# Joiners are part of how Persian, Indic scripts and emoji sequences are
# written, and cannot reorder or hide text: shown as they are.
_KEEP = frozenset("\u200c\u200d")
# Cc: C0, DEL, C1. Cf: bidi controls, zero-width and tag characters, BOM.
# Cs: lone surrogates from undecodable bytes (argv, file names), which
# could not even be encoded for output. Zl/Zp: U+2028/U+2029 line breaks.
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def hidden(ch: str) -> bool:
    """True for a character a terminal or a reader would not see as itself."""
    return ch not in _KEEP and unicodedata.category(ch) in _HIDDEN


def escaped(ch: str) -> str:
    """``ch`` written the way Python writes it in a string literal: ``\\x1b``, ``\\u202e``, ``\\U000e0041``."""
    if ch in _NAMED:
        return _NAMED[ch]
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def printable(s: Any) -> str:
    """``str(s)`` with every hidden character written as an escape."""
    s = "" if s is None else str(s)
    # Every hidden category is non-printable to Python: most strings return here.
    if s.isprintable():
        return s
    return "".join(escaped(c) if hidden(c) else c for c in s)


def shown(s: Any) -> str:
    """``printable(s)`` with rich markup escaped, to embed in a string rich will parse.

    Exact anywhere but right before a markup tag: a final backslash would
    escape that tag, so styled data is ``text(s, style)`` instead.
    """
    from rich.markup import escape

    # rich doubles a final backslash for a tag that might follow, which shows
    # as two where none does; a sentinel keeps it from seeing one.
    return escape(printable(s) + "x")[:-1]


def text(s: Any, style: str = "") -> Text:
    """``printable(s)`` as a rich Text: rich never parses it as markup."""
    from rich.text import Text

    return Text(printable(s), style=style)


def json_safe(j: str) -> str:
    """JSON text with hidden characters as ``\\u`` escapes (``json.dumps(..., ensure_ascii=False)``
    leaves DEL, C1, bidi controls and lone surrogates raw)."""
    if j.isprintable():
        return j
    out = []
    for c in j:
        # Outside strings JSON text is ASCII punctuation, digits and the
        # whitespace json.dumps writes; those stay as they are.
        if c in "\n\r\t" or not hidden(c):
            out.append(c)
            continue
        cp = ord(c)
        if cp > 0xFFFF:
            cp -= 0x10000
            out.append(f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}")
        else:
            out.append(f"\\u{cp:04x}")
    return "".join(out)
