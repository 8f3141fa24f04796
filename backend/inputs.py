"""Opening a file a user named: a regular file, read within a bound, never a hang.

Every file miglab reads because someone named it (``--lab``, a scenario file, a
session log, an import input) goes through here, so that ``/dev/zero`` is refused
instead of read until memory runs out, a FIFO is refused instead of blocking
forever, and a huge file is refused by its size before it is read.

The file is checked with ``os.stat`` first (a clear message), then opened with
``O_NONBLOCK`` (a FIFO swapped in between the two cannot block the open) and checked
again with ``fstat`` on what was actually opened.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from typing import BinaryIO

__all__ = [
    "IMPORT_MAX_BYTES",
    "LAB_MAX_BYTES",
    "LINE_MAX_BYTES",
    "LOG_MAX_BYTES",
    "SCENARIO_MAX_BYTES",
    "InputError",
    "iter_lines",
    "open_input",
    "read_input",
    "size_text",
    "too_deep",
    "too_long_number",
]

MiB = 2**20
GiB = 2**30
LAB_MAX_BYTES = 1 * MiB
"""A lab.toml is a few KiB; 1 MiB is far beyond any real one."""
SCENARIO_MAX_BYTES = 1 * MiB
LOG_MAX_BYTES = 64 * GiB
"""Session logs are read a line at a time, so their size costs time, not memory."""
IMPORT_MAX_BYTES = 64 * GiB
"""Imports are read a line at a time too."""
LINE_MAX_BYTES = 64 * MiB
"""A longer line in a log or an import is not read into memory: it is skipped as unreadable."""


class InputError(ValueError):
    """A named input that cannot be read as one: ``str()`` is one paragraph naming the file."""

    def __init__(self, path: str, reason: str, line: int | None = None) -> None:
        super().__init__(f"{path}:{line}: {reason}" if line is not None else f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.line = line


def size_text(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def _kind_of(mode: int) -> str | None:
    """What a file that is not a regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse(path: str, what: str, mode: int) -> None:
    kind = _kind_of(mode)
    if kind is not None:
        raise InputError(path, f"is {kind}, not a {what} (only a regular file is read)")


def open_input(path: str | os.PathLike[str], what: str, limit: int) -> BinaryIO:
    """Open a regular file for binary reading, refusing anything else or anything over ``limit``.

    ``what`` names the file in messages ("lab file", "session log"). Raises
    :class:`InputError` for what is not a regular file or too large; ``OSError``
    (FileNotFoundError, PermissionError...) as ``open`` would, for the caller to word.
    """
    name = os.fspath(path)
    _refuse(name, what, os.stat(name).st_mode)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        _refuse(name, what, info.st_mode)  # swapped for something else since the stat
        if info.st_size > limit:
            raise InputError(
                name,
                f"is {size_text(info.st_size)}, larger than a {what} may be "
                f"({size_text(limit)} at most)",
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The whole content of a small regular file (see :func:`open_input`)."""
    name = os.fspath(path)
    with open_input(name, what, limit) as file:
        data = file.read(limit + 1)
    if len(data) > limit:  # it grew since the fstat
        raise InputError(name, f"is larger than a {what} may be ({size_text(limit)} at most)")
    return data


def iter_lines(
    file: BinaryIO, max_line: int = LINE_MAX_BYTES
) -> Iterator[tuple[int, bytes | None]]:
    """(line number from 1, the line as read) of a binary file, read a line at a time.

    A line longer than ``max_line`` bytes is not kept: it comes as ``None`` (the
    caller counts it as unreadable) and the file is skipped to its end. Each line keeps
    its newline, so a caller can tell a last line cut short (no newline) from a whole one.
    """
    number = 0
    while True:
        line = file.readline(max_line + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line and not line.endswith(b"\n"):
            while True:  # skip the rest of the over-long line, a bounded chunk at a time
                rest = file.readline(max_line)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, line


# --------------------------------------------------------------------------- parse limits

NESTING_REPORTED = 100
"""Nesting deeper than this is named as the likely cause of a RecursionError."""
_LONG_NUMBER = re.compile(r"[0-9][0-9_]{4299,}")


def too_deep(path: str, text: str) -> InputError:
    """The error for a document nested too deep to parse (RecursionError), with its line."""
    line = _deep_line(text, NESTING_REPORTED)
    return InputError(path, "nested too deep to read (arrays or tables inside each other)", line)


def too_long_number(path: str, text: str) -> InputError | None:
    """The error for an integer too long to convert (Python's 4300-digit limit), or None
    when the text has no such number (the ValueError was something else)."""
    match = _LONG_NUMBER.search(text)
    if match is None:
        return None
    line = text.count("\n", 0, match.start()) + 1
    digits = len(match.group().replace("_", ""))
    return InputError(path, f"a number of {digits} digits; numbers have at most 4300", line)


def _deep_line(text: str, limit: int) -> int | None:
    """The line where brackets first nest deeper than ``limit`` (strings skipped), or None."""
    depth = 0
    quote: str | None = None
    escaped = False
    line = 1
    for char in text:
        if char == "\n":
            line += 1
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
            if depth > limit:
                return line
        elif char in "]}":
            depth = max(0, depth - 1)
    return None
