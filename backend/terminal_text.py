"""Text from files and hosts, made safe to print on a terminal.

A lab name, a scenario title, a host's error message or a log header is data: an
``ESC]0;...BEL`` in it must not set the terminal's title, nor ``ESC[2J`` clear the
screen. :func:`printable` shows every control character as a visible escape
(``\\x1b``), so the text is still all there to read.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 controls, DEL, C1 controls, and the Unicode bidirectional overrides and isolates
# (they reorder what the terminal shows).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


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
