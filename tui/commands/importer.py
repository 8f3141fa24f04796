"""`miglab import KIND FILE -o LOG`: raw tool output captured by hand, as a session log."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from backend.events import Event, EventBus
from backend.importer import KINDS, ImportError_, import_probe, import_qemu, import_xl
from backend.inputs import (
    IMPORT_MAX_BYTES,
    LINE_MAX_BYTES,
    InputError,
    iter_lines,
    open_input,
    size_text,
)
from backend.session import SessionLogWriter, make_header
from backend.terminal_text import printable
from tui.commands.common import EXIT_OK, BadInput


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "import",
        help="turn a raw ping / sysbench / dbench / xl / qemu output into a session log",
        description="Read a file of raw output that a tool printed when you ran it by hand "
        "and write it as a miglab session log, so `miglab report` works on it. KIND is one "
        f"of: {', '.join(KINDS)}. 'qemu' reads query-migrate answers, one JSON object a "
        "line (bare, or QMP replies).",
    )
    parser.add_argument("kind", choices=KINDS, metavar="KIND")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("-o", "--output", required=True, metavar="LOG", help="the new log")
    parser.add_argument("--host", default="console", help="where the probe ran")
    parser.add_argument("--domain", default="guest", help="the migrated guest's name")
    parser.add_argument("--from", dest="source", default="source", help="migration source")
    parser.add_argument("--to", dest="dest", default="dest", help="migration destination")
    parser.add_argument(
        "--start",
        type=float,
        default=None,
        help="epoch seconds the output began (default: the file's modification time); "
        "for tools that print no timestamps of their own",
    )
    parser.set_defaults(handler=run)


def _events(args: argparse.Namespace, lines: list[str], start: float) -> list[Event]:
    if args.kind == "xl":
        return import_xl(lines, args.domain, args.source, args.dest, start)
    if args.kind == "qemu":
        return import_qemu(lines, args.domain, args.source, args.dest, start)
    return import_probe(args.kind, lines, args.host, start)


def _text(number: int, line: bytes | None) -> str:
    if line is None:  # not read into memory
        raise InputError("", f"a line longer than {size_text(LINE_MAX_BYTES)}", number)
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:  # a regular file, read a line at a time: never /dev/zero or a FIFO
        with open_input(path, "file to import", IMPORT_MAX_BYTES) as file:
            mtime = os.fstat(file.fileno()).st_mtime
            lines = [_text(number, line) for number, line in iter_lines(file)]
    except InputError as exc:
        where = f"{path}:{exc.line}" if exc.line is not None else str(path)
        raise BadInput(f"{where}: cannot import it: {exc.reason}") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read it: {exc.strerror}") from None
    start = args.start if args.start is not None else mtime
    try:
        events = _events(args, lines, start)
    except ImportError_ as exc:
        raise BadInput(f"{path}: not {args.kind} output: {exc}") from None
    if os.path.exists(args.output):
        raise BadInput(f"{args.output} exists; a session log is never overwritten")
    asyncio.run(_write(args, events))
    print(printable(f"{args.output}: {len(events)} events from {path} ({args.kind})"))
    return EXIT_OK


async def _write(args: argparse.Namespace, events: list[Event]) -> None:
    bus = EventBus()
    header = make_header(scenario=f"import:{args.kind}")
    header["t"] = min(event.t for event in events)  # the session began with its data
    async with await SessionLogWriter.create(args.output, header, bus):
        for event in events:
            bus.publish(event)
