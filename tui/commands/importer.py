"""`miglab import KIND FILE -o LOG`: raw tool output captured by hand, as a session log."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from backend.events import Event, EventBus
from backend.importer import KINDS, ImportError_, import_probe, import_qemu, import_xl
from backend.session import SessionLogWriteError, SessionLogWriter, make_header
from tui.commands import numbers
from tui.commands.common import EXIT_FAILED, EXIT_OK, BadInput


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
        type=numbers.float_range(0, numbers.MAX_EPOCH_S),
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


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        start = args.start if args.start is not None else path.stat().st_mtime
    except OSError as exc:
        raise BadInput(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        events = _events(args, lines, start)
    except ImportError_ as exc:
        raise BadInput(f"{path}: not {args.kind} output: {exc}") from None
    if os.path.exists(args.output):
        raise BadInput(f"{args.output} exists; a session log is never overwritten")
    error = asyncio.run(_write(args, events))
    if error is not None:  # the disk filled, say: what was written up to then is kept
        print(f"miglab: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.output}: {len(events)} events from {path} ({args.kind})")
    return EXIT_OK


async def _write(args: argparse.Namespace, events: list[Event]) -> SessionLogWriteError | None:
    """Write the log; why it could not be written, if it could not."""
    bus = EventBus()
    header = make_header(scenario=f"import:{args.kind}")
    header["t"] = min(event.t for event in events)  # the session began with its data
    try:
        writer = await SessionLogWriter.create(args.output, header, bus)
    except SessionLogWriteError as exc:  # no file is left behind
        return exc
    async with writer:
        for event in events:
            bus.publish(event)
    return writer.error
