"""Lab drivers: iSCSI targets (tgt, LIO, IET), the open-iscsi initiator, hypervisors.

The ``parse_*`` modules are pure: text in, frozen dataclasses out. They never run a
command, so the drivers (which run commands over the transport) and the tests (which
read captured transcripts from ``tests/data``) share exactly the same code.

Every parser raises :class:`ParseError` on input it does not understand, naming the
offending line, so a changed tool version fails loudly instead of yielding half a model.
"""

from __future__ import annotations

__all__ = ["ParseError"]


class ParseError(ValueError):
    """Text that a parser could not understand.

    ``line`` is the offending line (``None`` when the problem is something missing,
    e.g. a required key), ``lineno`` its 1-based number in the parsed text when known.
    """

    def __init__(self, reason: str, line: str | None = None, lineno: int | None = None) -> None:
        self.reason = reason
        self.line = line
        self.lineno = lineno
        where = ""
        if line is not None:
            where = f" at line {lineno}: {line!r}" if lineno is not None else f": {line!r}"
        super().__init__(f"{reason}{where}")
