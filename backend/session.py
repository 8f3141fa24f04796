"""The session log: JSON Lines, header first, one event a line, append-only.

The writer subscribes to the event bus, so what the console showed is what
was saved. Events are written in batches (everything that arrived since the
last write) and flushed after each batch; phase boundaries and migration
results are also fsync'ed. A process killed mid-write loses at most its last
partial line, which the reader skips, so a log cut by a crash still loads.

pandas (``read_json(lines=True)``), DuckDB and ``jq`` read the file as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiofiles
from pydantic import ValidationError

from backend import __version__
from backend.events import (
    SCHEMA_VERSION,
    Event,
    EventBus,
    MigrationFinished,
    Phase,
    now,
    parse_event,
)

HEADER_KIND = "session.header"
END_KIND = "session.end"
# Events after which the log is fsync'ed: losing them to a power cut would lose a result.
_DURABLE = (Phase, MigrationFinished)


class SessionLogError(Exception):
    """A session log that cannot be read at all (missing, empty, not a miglab log)."""


def make_header(
    *,
    lab: dict[str, Any] | None = None,
    lab_file: str | None = None,
    lab_sha256: str | None = None,
    simulated: bool = False,
    scenario: str | None = None,
    hosts: dict[str, Any] | None = None,
    simulation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": HEADER_KIND,
        "t": now(),
        "schema": SCHEMA_VERSION,
        "miglab": __version__,
        "lab_file": lab_file,
        "lab_sha256": lab_sha256,
        "lab": lab,
        "simulated": simulated,
        "scenario": scenario,
        "hosts": hosts or {},
        "simulation": simulation,  # speed, seed, epoch... when the lab is simulated
    }


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"


class SessionLogWriter:
    """Writes one session log; use ``async with SessionLogWriter.open(path, header, bus)``."""

    def __init__(self, path: Path, file: Any) -> None:
        self.path = path
        self._file = file
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.events_written = 0

    @classmethod
    async def create(
        cls, path: str | os.PathLike[str], header: dict[str, Any], bus: EventBus | None = None
    ) -> SessionLogWriter:
        target = Path(path)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        file = await aiofiles.open(target, "x", encoding="utf-8")  # never overwrite a log
        writer = cls(target, file)
        await file.write(_line(header))
        await file.flush()
        writer._task = asyncio.get_running_loop().create_task(writer._drain())
        if bus is not None:
            bus.subscribe(writer.write)
        return writer

    def write(self, event: Event) -> None:
        """Queue an event (never blocks the publisher)."""
        self._queue.put_nowait(event)

    async def _drain(self) -> None:
        stop = False
        while not stop:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if None in batch:
                stop = True
            events = [event for event in batch if event is not None]
            if not events:
                continue
            await self._file.write("".join(_line(e.model_dump(mode="json")) for e in events))
            await self._file.flush()
            self.events_written += len(events)
            if any(isinstance(e, _DURABLE) for e in events):
                await asyncio.to_thread(os.fsync, self._file.fileno())

    async def close(self, status: str = "ok") -> None:
        """Write the end marker, flush, fsync and close. Safe to call twice."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        await self._task
        self._task = None
        await self._file.write(_line({"kind": END_KIND, "t": now(), "status": status}))
        await self._file.flush()
        with contextlib.suppress(OSError):
            await asyncio.to_thread(os.fsync, self._file.fileno())
        await self._file.close()

    async def __aenter__(self) -> SessionLogWriter:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            status = "ok"
        elif issubclass(exc_type, asyncio.CancelledError | KeyboardInterrupt):
            status = "interrupted"
        else:
            status = "failed"
        await self.close(status)


@dataclass
class Session:
    path: Path
    header: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    end: dict[str, Any] | None = None
    truncated_last_line: bool = False
    bad_lines: list[int] = field(default_factory=list)

    @property
    def cut_short(self) -> bool:
        """True if the log has no end marker: the session crashed or is still running."""
        return self.end is None

    def of_kind(self, kind: str) -> list[Event]:
        return [event for event in self.events if event.kind == kind]


def read_session(path: str | os.PathLike[str]) -> Session:
    """Load a session log, tolerating a truncated last line (blocking: use to_thread)."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SessionLogError(f"{target}: cannot read the session log: {exc.strerror}") from exc
    lines = text.split("\n")
    truncated = lines[-1] != ""  # a complete log ends with a newline
    if not truncated:
        lines.pop()
    if not lines or not lines[0].strip():
        raise SessionLogError(f"{target}: empty file, not a session log")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("kind") != HEADER_KIND:
        raise SessionLogError(
            f"{target}:1: not a miglab session log (the first line must be a "
            f'"{HEADER_KIND}" object)'
        )
    session = Session(path=target, header=header, truncated_last_line=truncated)
    last = len(lines)
    for number, line in enumerate(lines[1:], start=2):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if not (truncated and number == last):
                session.bad_lines.append(number)
            continue
        if not isinstance(data, dict):
            session.bad_lines.append(number)
        elif data.get("kind") == END_KIND:
            session.end = data
        else:
            try:
                session.events.append(parse_event(data))
            except ValidationError:  # not even a generic event (no kind, or a bad time)
                session.bad_lines.append(number)
    return session
