"""The session log: JSON Lines, header first, one event a line, append-only.

The writer subscribes to the event bus, so what the console showed is what
was saved. Events are written in batches (everything that arrived since the
last write), unbuffered; phase boundaries and migration results are also
fsync'ed. A process killed mid-write loses at most its last partial line, which
the reader skips, so a log cut by a crash still loads. A write that fails (disk
full) cuts the file back to its last complete line and says so at once
(:attr:`SessionLogWriter.failed`), so that the run stops instead of going on
unrecorded. The end marker says how the session ended (:data:`EndStatus`).

pandas (``read_json(lines=True)``), DuckDB and ``jq`` read the file as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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


EndStatus = Literal["ok", "interrupted", "crashed", "failed"]
"""How a session ended, as its end marker says: it ran to its end; it was stopped (Ctrl-C,
a quit while something ran); the program hit a bug; an operation (or the log) failed."""


class SessionLogWriteError(OSError):
    """The session log could not be written; the message names the file and the OS error."""

    def __str__(self) -> str:
        return str(self.strerror)  # the whole message, without "[Errno N]"


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


def _line(data: dict[str, Any]) -> bytes:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"
    # A lone surrogate (undecodable host output) becomes its JSON escape: still valid JSON.
    return text.encode("utf-8", errors="backslashreplace")


def _write_error(path: Path, exc: OSError) -> SessionLogWriteError:
    why = exc.strerror or str(exc)
    error = SessionLogWriteError(exc.errno, f"cannot write the session log {path}: {why}")
    error.filename = str(path)
    return error


class SessionLogWriter:
    """Writes one session log; use ``async with await SessionLogWriter.create(path, header)``.

    The file is written unbuffered, so what is on disk is exactly the lines written.
    A write that fails (the disk is full, the file system went read-only) ends the
    writer at once: the file is cut back to its last complete line, :attr:`error` says
    why (naming the file), :attr:`failed` is set and every :meth:`on_failure` callback
    runs, so that whoever records into it can stop rather than go on unrecorded.
    Events written after that are dropped, not counted.
    """

    def __init__(self, path: Path, file: Any) -> None:
        self.path = path
        self._file = file
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._size = 0  # bytes of complete lines on disk
        self._callbacks: list[Callable[[SessionLogWriteError], None]] = []
        self.events_written = 0
        self.error: SessionLogWriteError | None = None
        """Why the log could not be written (None while it can)."""
        self.failed = asyncio.Event()
        """Set when a write failed: the log ends at its last complete line."""

    @classmethod
    async def create(
        cls, path: str | os.PathLike[str], header: dict[str, Any], bus: EventBus | None = None
    ) -> SessionLogWriter:
        """Start the log with its header; raise SessionLogWriteError if that cannot be done
        (then no file is left behind)."""
        target = Path(path)
        try:
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            # "x": never overwrite a log. Unbuffered: what was written is what is on disk.
            file = await aiofiles.open(target, "xb", buffering=0)
        except FileExistsError:
            raise  # as it is: the caller may pick another name
        except OSError as exc:
            raise _write_error(target, exc) from None
        writer = cls(target, file)
        try:
            await writer._write(_line(header))
        except OSError as exc:
            await writer._discard()
            raise _write_error(target, exc) from None
        writer._task = asyncio.get_running_loop().create_task(writer._drain())
        if bus is not None:
            bus.subscribe(writer.write)
        return writer

    def on_failure(self, callback: Callable[[SessionLogWriteError], None]) -> None:
        """Call ``callback(error)`` when a write fails (at once if one already did)."""
        if self.error is not None:
            callback(self.error)
        else:
            self._callbacks.append(callback)

    def write(self, event: Event) -> None:
        """Queue an event (never blocks the publisher); dropped once the log failed."""
        if self.error is None and self._task is not None:
            self._queue.put_nowait(event)

    async def _write(self, data: bytes) -> None:
        """Write all of ``data``; on failure cut the file back to its last complete line."""
        view = memoryview(data)
        try:
            while view:
                count = await self._file.write(view)
                if not count:  # a raw write that wrote nothing and raised nothing
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[count:]
        except OSError:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.ftruncate, self._file.fileno(), self._size)
            raise
        self._size += len(data)

    async def _discard(self) -> None:
        """Close and remove a log that never got its header."""
        with contextlib.suppress(OSError):
            await self._file.close()
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.path.unlink)

    def _fail(self, exc: OSError) -> None:
        self.error = _write_error(self.path, exc)
        self.failed.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self.error)

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
            try:
                await self._write(b"".join(_line(e.model_dump(mode="json")) for e in events))
                if any(isinstance(e, _DURABLE) for e in events):
                    await asyncio.to_thread(os.fsync, self._file.fileno())
            except OSError as exc:
                self._fail(exc)
                return
            self.events_written += len(events)

    async def close(self, status: EndStatus = "ok") -> None:
        """Write the end marker, fsync and close. Safe to call twice.

        A log that failed gets no end marker (it could not be written): a reader sees
        it cut short, which it was. A failure now is in :attr:`error`, not raised.
        """
        if self._task is None:
            return
        self._queue.put_nowait(None)
        await self._task
        self._task = None
        if self.error is None:
            try:
                await self._write(_line({"kind": END_KIND, "t": now(), "status": status}))
            except OSError as exc:
                self._fail(exc)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(os.fsync, self._file.fileno())
        with contextlib.suppress(OSError):
            await self._file.close()

    async def __aenter__(self) -> SessionLogWriter:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        status: EndStatus
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
