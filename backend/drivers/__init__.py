"""Lab drivers: iSCSI targets (tgt, LIO, IET), the open-iscsi initiator, hypervisors.

The ``parse_*`` modules are pure: text in, frozen dataclasses out. They never run a
command, so the drivers (which run commands over the transport) and the tests (which
read captured transcripts from ``tests/data``) share exactly the same code.

Two contracts (tests/unit/test_parsers_never_raise.py checks both on every capture):

- What is recorded (a migration's progress, a listing read for a report or an import) is
  read line by line: a line of no known form is skipped and counted, never raised, and a
  value the text does not give is None, never a guess.
- A whole answer whose meaning gates a safety rule (``xl list`` says where the guest runs)
  may be refused as a :class:`ParseError` naming the offending line, so that a changed
  tool stops the action loudly instead of acting on half a model; the driver turns it
  into a message naming the host and the command.
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
