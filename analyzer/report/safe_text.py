"""Captured text made safe for the places it is written: terminals, spreadsheets, JSON lines.

Everything a capture holds is the attacker's choice. On a terminal a ``\\x1b[2J`` in a URI would
clear the screen, a carriage return or a newline in a user name would overwrite or forge a line,
and Unicode bidi controls would reorder what is shown; in a spreadsheet a cell starting with ``=``
is a formula; in JSON Lines a raw U+2028 splits a record for readers that honour Unicode line
breaks. The helpers here escape exactly that, and leave everything else (accents, ``DOMAIN\\user``,
``…``) as it was. A CSV file gets both the terminal's and the spreadsheet's escaping: it is read
with ``cat`` as often as with a spreadsheet.
"""

from __future__ import annotations

import re
from typing import IO, Any

# DEL, C1 controls, the line and paragraph separators, and the bidi controls; then the C0 ones.
_OTHERS = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE_CELL = re.compile(f"[\x00-\x1f{_OTHERS}]")
_UNSAFE_OUTPUT = re.compile(f"[\x00-\x09\x0b-\x1f{_OTHERS}]")  # all but the line feed


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character escaped as ``\\xNN`` / ``\\uNNNN`` (newlines too:
    one cell, one line). Unchanged (the same object) when there is none."""
    if text.isascii() and text.isprintable():
        return text
    return _UNSAFE_CELL.sub(_escaped, text)


#: A colour (SGR) sequence: the one escape a coloured writer sends on purpose. It can only
#: change colours, never move the cursor, clear the screen or set a title.
_COLOUR = re.compile("\x1b\\[[0-9;]*m")


class TerminalSafe:
    """A text stream that escapes control characters in everything written to it except the
    line feeds that end lines: whatever a writer forgot to clean cannot reach the terminal.
    With ``colour``, SGR colour sequences pass (a coloured writer's own)."""

    def __init__(self, out: IO[str], colour: bool = False) -> None:
        self._out = out
        self._colour = colour

    def write(self, text: str) -> int:
        if _UNSAFE_OUTPUT.search(text):
            if self._colour:
                parts = _COLOUR.split(text)
                codes = _COLOUR.findall(text)
                clean = [_UNSAFE_OUTPUT.sub(_escaped, part) for part in parts]
                text = "".join(c + k for c, k in zip(clean, [*codes, ""], strict=True))
            else:
                text = _UNSAFE_OUTPUT.sub(_escaped, text)
        return self._out.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, ...
        return getattr(self._out, name)


def terminal_safe(out: IO[str], colour: bool = False) -> IO[str]:
    """``out`` wrapped in ``TerminalSafe`` (once)."""
    if isinstance(out, TerminalSafe):
        return out  # type: ignore[return-value]
    return TerminalSafe(out, colour)  # type: ignore[return-value]


#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
_FORMULA_START = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def spreadsheet_cell(text: str) -> str:
    """A cell of captured text that no spreadsheet will run: a leading ``'`` when it starts
    like a formula. Numbers (``-5``, ``+1.5e3``) stay numbers."""
    if text and text[0] in _FORMULA_START and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


_UNSAFE_JSON = re.compile(f"[{_OTHERS}]")


def _json_escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_cell(text: str) -> str:
    """JSON text with what JSON leaves raw and a terminal or viewer acts on (DEL, C1 controls,
    the line and paragraph separators, bidi controls) escaped as ``\\uNNNN``: the same JSON
    value, one line, inert (JSON escapes the other control characters itself)."""
    return _UNSAFE_JSON.sub(_json_escaped, text)


def one_line(text: str) -> str:
    """JSON Lines text (``ensure_ascii=False``) made as inert as ``json_cell`` makes a cell: the
    Unicode line breaks would split a record for ``str.splitlines`` and JavaScript, and DEL,
    the C1 and the bidi controls reorder or hide what a terminal shows of the line. Pure ASCII
    without DEL (nearly every line) is returned as it is."""
    if text.isascii() and "\x7f" not in text:
        return text
    return json_cell(text)
