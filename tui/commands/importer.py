"""`miglab import KIND FILE -o LOG`: raw tool output captured by hand, as a session log."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from backend.events import Event, now
from backend.import_detect import TAIL_LINES, DetectError, Head, describe, detect, read_head
from backend.importer import (
    AUTO,
    KINDS,
    ImportCounts,
    ImportError_,
    import_qemu,
    import_xl,
    iter_probe,
)
from backend.inputs import (
    IMPORT_MAX_BYTES,
    LINE_MAX_BYTES,
    InputError,
    iter_lines,
    open_input,
    size_text,
)
from backend.session import END_KIND, SessionLogWriteError, make_header, write_error
from backend.terminal_text import printable
from tui.commands import SUBCOMMANDS, numbers
from tui.commands.common import EXIT_FAILED, EXIT_OK, BadInput


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "import",
        help=SUBCOMMANDS["import"],
        description="Read a file of raw output that a tool printed when you ran it by hand "
        "and write it as a miglab session log, so `miglab report` works on it. KIND is one "
        f"of: {', '.join(KINDS)}, or {AUTO}: the tool told from the text (exit 2 when it "
        "cannot be told, never a guess). 'qemu' reads query-migrate answers, one JSON "
        "object a line (bare, or QMP replies), or HMP 'info migrate' output; which it is, "
        "is told from the text. The import says which tool and format it found. ping "
        "lines without -D's timestamp (BusyBox ping, iputils without -D) are recorded "
        "without a time: their seqs keep the order.",
    )
    parser.add_argument("kind", choices=(AUTO, *KINDS), metavar="KIND")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("-o", "--output", required=True, metavar="LOG", help="the new log")
    parser.add_argument("--host", default="console", help="where the probe ran")
    parser.add_argument("--domain", default="guest", help="the migrated guest's name")
    parser.add_argument("--from", dest="source", default="source", help="migration source")
    parser.add_argument("--to", dest="dest", default="dest", help="migration destination")
    parser.add_argument(
        "--start",
        type=numbers.float_range(0, numbers.MAX_EPOCH_S),
        default=None,
        help="epoch seconds the output began (default: the file's modification time); "
        "for tools that print times relative to their start (sysbench, dbench, xl, qemu)",
    )
    parser.set_defaults(handler=run)


def _events(
    args: argparse.Namespace,
    kind: str,
    lines: Iterable[str],
    start: float,
    counts: ImportCounts | None = None,
) -> Iterator[Event]:
    if kind == "xl":
        return iter(import_xl(list(lines), args.domain, args.source, args.dest, start))
    if kind == "qemu":
        return iter(import_qemu(list(lines), args.domain, args.source, args.dest, start))
    return iter_probe(kind, lines, args.host, start, counts)


def _kept(lines: Iterator[str], tail: deque[str]) -> Iterator[str]:
    """``lines``, the last of which stay in ``tail`` (a summary tells the format)."""
    for line in lines:
        tail.append(line)
        yield line


def _lines(file: BinaryIO) -> Iterator[str]:
    for number, line in iter_lines(file):
        if line is None:  # not read into memory
            raise InputError("", f"a line longer than {size_text(LINE_MAX_BYTES)}", number)
        yield line.decode("utf-8", errors="replace").rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    output = Path(args.output)
    if output.exists():
        raise BadInput(f"{args.output} exists; a session log is never overwritten")
    counts = ImportCounts()
    kind = args.kind
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    head = Head([], complete=True)
    try:  # a regular file, read a line at a time: never /dev/zero or a FIFO
        with open_input(path, "file to import", IMPORT_MAX_BYTES) as file:
            start = args.start if args.start is not None else os.fstat(file.fileno()).st_mtime
            lines = _lines(file)
            head = read_head(lines)
            if kind == AUTO:
                kind = detect(head.lines, complete=head.complete)
            stream = _kept(itertools.chain(head.lines, lines), tail)
            events = _events(args, kind, stream, start, counts)
            written = _write(kind, output, events, start)
    except InputError as exc:
        where = f"{path}:{exc.line}" if exc.line is not None else str(path)
        raise BadInput(f"{where}: cannot import it: {exc.reason}") from None
    except DetectError as exc:
        raise BadInput(
            f"{path}: cannot tell which tool wrote it: {exc}; give its KIND ({', '.join(KINDS)})"
        ) from None
    except ImportError_ as exc:
        if args.kind == AUTO:
            found = describe(kind, head.lines, tail)
            raise BadInput(f"{path}: detected {found}, but cannot import it: {exc}") from None
        raise BadInput(f"{path}: not {kind} output: {exc}{_looks_like(kind, head)}") from None
    except FileExistsError:  # made meanwhile by someone else
        raise BadInput(f"{args.output} exists; a session log is never overwritten") from None
    except SessionLogWriteError as exc:  # the disk filled, say: no partial log is left
        print(f"miglab: {printable(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        name = exc.filename or path
        raise BadInput(f"{name}: cannot read it: {exc.strerror}") from None
    found = describe(kind, head.lines, tail if not head.complete else ())
    print(printable(f"{path}: {'detected' if args.kind == AUTO else 'format'}: {found}"))
    print(printable(f"{args.output}: {written.events} events from {path} ({kind})"))
    if written.untimed:  # said, so that nobody looks for times the text never had
        print(printable(
            f"{path}: {written.untimed} readings have no time (the tool printed none): "
            "recorded in their order with their seq; the report counts them in seqs"
        ))  # fmt: skip
    if counts.lines_not_understood:  # skipped, not fatal: say so rather than stay silent
        skipped = counts.lines_not_understood
        print(printable(f"{path}: {skipped} line{'s' * (skipped != 1)} not understood (skipped)"))
    return EXIT_OK


def _looks_like(kind: str, head: Head) -> str:
    """A hint when the text is plainly another tool's (exactly one other is recognised)."""
    try:
        other = detect(head.lines, complete=head.complete)
    except DetectError:
        return ""
    if other == kind or (kind.startswith("sysbench") and other == "sysbench"):
        return ""
    return f" (it looks like {other} output: miglab import {other} or {AUTO})"


@dataclasses.dataclass(frozen=True)
class _Written:
    events: int
    untimed: int
    """Events without a time (ping lines without -D's stamp)."""


def _write(kind: str, output: Path, events: Iterator[Event], start: float) -> _Written:
    """Write the session log a line at a time; says how many events it holds.

    The header comes first and carries the time of the earliest event, known only at
    the end (of the events that have one; with none, ``start``):
    the events go to a spool file next to the log, then the log is made from the
    header and the spool. Nothing is written when the input has no readings; a log
    that could not be written whole is removed, and a failed write (a full disk) is a
    :class:`SessionLogWriteError` naming the log, as the session log writer says it.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    count, untimed, first = 0, 0, math.inf
    with _writing(output):
        spool = tempfile.TemporaryFile("w+", encoding="utf-8", dir=output.parent)
    try:
        for event in events:  # reading the input: its errors are not the log's
            with _writing(output):
                spool.write(_json_line(event.model_dump(mode="json")))
            count += 1
            if event.t is None:  # a sample the tool printed no time for
                untimed += 1
            elif event.t < first:
                first = event.t
        if not count:
            raise ImportError_(f"no {kind} readings found")
        header = make_header(scenario=f"import:{kind}")
        # The session began with its data; with no time in it, when the user says it
        # began (--start) or the file's time.
        header["t"] = first if first < math.inf else start
        with _writing(output):
            spool.seek(0)
            with output.open("x", encoding="utf-8") as log:  # never overwrite a log
                try:
                    log.write(_json_line(header))
                    shutil.copyfileobj(spool, log, 2**20)
                    log.write(_json_line({"kind": END_KIND, "t": now(), "status": "ok"}))
                    log.flush()
                    os.fsync(log.fileno())
                except BaseException:
                    output.unlink(missing_ok=True)
                    raise
    except BaseException:
        with contextlib.suppress(OSError):  # its buffer cannot be flushed: a full disk
            spool.close()
        raise
    with _writing(output):
        spool.close()
    return _Written(count, untimed)


@contextlib.contextmanager
def _writing(output: Path) -> Iterator[None]:
    """An OSError while writing becomes the session log's write error."""
    try:
        yield
    except (SessionLogWriteError, FileExistsError):  # an existing log is never touched
        raise
    except OSError as exc:
        raise write_error(output, exc) from None


def _json_line(data: dict[str, Any]) -> str:
    """A log line as the session log writer makes it."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"
