"""Text from files and hosts, made safe to print on a terminal.

A lab name, a scenario title, a host's error message or a log header is data: an
``ESC]0;...BEL`` in it must not set the terminal's title, nor ``ESC[2J`` clear the
screen. :func:`printable` shows every control character as a visible escape
(``\\x1b``), so the text is still all there to read.
"""

from __future__ import annotations

import re

__all__ = ["BIDI", "C0", "C1", "DEL", "printable"]

# What a terminal acts on instead of showing (the console's safe_text uses these too):
C0 = range(0x00, 0x20)
DEL = 0x7F
C1 = range(0x80, 0xA0)
# The Unicode bidirectional overrides and isolates: they reorder what follows them.
BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))


def _class(codes: list[int]) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(chr(code)) for code in codes) + "]")


_CODES = [*C0, DEL, *C1, *BIDI]
_CONTROL = _class(_CODES)
_CONTROL_BUT_LINES = _class([code for code in _CODES if code != ord("\n")])


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with each control character as a visible escape: ESC becomes ``\\x1b``.

    ``keep_newlines``: for text printed as several lines (a report); otherwise a
    newline is escaped too, so one value stays on one line.
    """
    pattern = _CONTROL_BUT_LINES if keep_newlines else _CONTROL
    return pattern.sub(_escape, text)
