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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiofiles
from pydantic import ValidationError

from backend import __version__
from backend.events import (
    KINDS,
    SCHEMA_VERSION,
    Event,
    EventBus,
    MigrationFinished,
    Phase,
    UnknownEvent,
    now,
    parse_event,
)
from backend.inputs import LINE_MAX_BYTES, LOG_MAX_BYTES, InputError, iter_lines, open_input

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
    campaign: dict[str, Any] | None = None,
) -> dict[str, Any]:
    header = {
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
    if campaign is not None:  # the run's place in a campaign: its group and parameters
        header["campaign"] = campaign
    return header


def _line(data: dict[str, Any]) -> bytes:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"
    # A lone surrogate (undecodable host output) becomes its JSON escape: still valid JSON.
    return text.encode("utf-8", errors="backslashreplace")


def write_error(path: Path, exc: OSError) -> SessionLogWriteError:
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
            raise write_error(target, exc) from None
        writer = cls(target, file)
        try:
            await writer._write(_line(header))
        except OSError as exc:
            await writer._discard()
            raise write_error(target, exc) from None
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
        self.error = write_error(self.path, exc)
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


class SessionRecorder:
    """The session log of a lab session, from the first event on.

    Events arrive (:meth:`write`, a bus subscriber) before the log can begin: its header
    names the hosts' versions, which are asked after connecting. They are kept and
    written first, in order, when :meth:`open` writes the header. ``rename(attempt)``,
    if given, names the file anew when one of that name exists (never overwritten).
    """

    def __init__(self, path: Path, rename: Callable[[int], Path] | None = None) -> None:
        self.path = path
        self._rename = rename
        self._writer: SessionLogWriter | None = None
        self._early: list[Event] | None = []  # events before the log exists
        self.opened = False
        """Whether :meth:`open` was called (it may have failed)."""

    @property
    def writing(self) -> bool:
        """The log was begun and is not closed."""
        return self._writer is not None

    def write(self, event: Event) -> None:
        if self._writer is not None:
            self._writer.write(event)
        elif self._early is not None:
            self._early.append(event)

    async def open(
        self, header: dict[str, Any], on_failure: Callable[[SessionLogWriteError], None]
    ) -> None:
        """Write the header, then the events so far; ``on_failure`` when a write fails.
        Raises SessionLogWriteError or OSError when the log cannot begin (the events kept
        are then dropped: nothing is recorded)."""
        self.opened = True
        attempt = 0
        try:
            while True:
                try:
                    self._writer = await SessionLogWriter.create(self.path, header)
                    break
                except FileExistsError:  # one started in the same second: never overwrite
                    if self._rename is None or attempt > 100:
                        raise
                    attempt += 1
                    self.path = self._rename(attempt)
        except BaseException:
            self._early = None
            raise
        early, self._early = self._early or [], None
        for event in early:
            self._writer.write(event)
        self._writer.on_failure(on_failure)

    async def close(self, status: EndStatus) -> SessionLogWriteError | None:
        """Write the end marker and close; why the log could not be written, if it could not
        (also when only its end could not). None when it was never begun."""
        writer, self._writer = self._writer, None
        self._early = None
        if writer is None:
            return None
        await writer.close(status)
        return writer.error


# Event times outside this range are not times (NaN, 1e308): such lines are skipped.
T_MIN, T_MAX = 0.0, 1e11  # the epoch .. the year 5138


@dataclass
class Skipped:
    """Lines of a log that were not read as events, counted by why (not silently dropped)."""

    counts: dict[str, int] = field(default_factory=dict)
    """Why -> how many lines."""
    first_lines: dict[str, list[int]] = field(default_factory=dict)
    """Why -> the first few line numbers (to look at)."""

    def add(self, why: str, number: int) -> None:
        self.counts[why] = self.counts.get(why, 0) + 1
        examples = self.first_lines.setdefault(why, [])
        if len(examples) < _EXAMPLES:
            examples.append(number)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> list[str]:
        """One sentence per reason: "3 lines skipped (not JSON): 4, 9, 12"."""
        out = []
        for why, count in self.counts.items():
            lines = ", ".join(map(str, self.first_lines.get(why, [])))
            more = ", ..." if count > len(self.first_lines.get(why, [])) else ""
            plural = "s" if count != 1 else ""
            out.append(f"{count} line{plural} skipped ({why}): line{plural} {lines}{more}")
        return out


_EXAMPLES = 10
_BAD_LINES_KEPT = 10_000  # line numbers kept in Session.bad_lines; the counts are complete


@dataclass
class Session:
    path: Path
    header: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    end: dict[str, Any] | None = None
    truncated_last_line: bool = False
    bad_lines: list[int] = field(default_factory=list)
    """Lines that are not events at all (not JSON, not an object, no kind, a bad time)."""
    skipped: Skipped = field(default_factory=Skipped)
    """Every line not read as an event, by why: bad lines and events that did not validate."""
    warnings: list[str] = field(default_factory=list)
    """What the reader of the log should know (a schema newer than this miglab's)."""

    @property
    def cut_short(self) -> bool:
        """True if the log has no end marker: the session crashed or is still running."""
        return self.end is None

    def of_kind(self, kind: str) -> list[Event]:
        return [event for event in self.events if event.kind == kind]


class SessionLog:
    """A session log read a line at a time: memory does not grow with the log.

    Opening reads and checks the header (:class:`SessionLogError` if it is not a miglab
    log); :meth:`records` then yields each event line as its JSON object, and
    :meth:`events` as events. ``end``, ``bad_lines`` and ``skipped`` are complete once
    the iteration has ended. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.end: dict[str, Any] | None = None
        self.truncated_last_line = False
        self.bad_lines: list[int] = []
        self.skipped = Skipped()
        self.warnings: list[str] = []
        try:
            self._file = open_input(self.path, "session log", LOG_MAX_BYTES)
        except InputError as exc:
            raise SessionLogError(
                f"{self.path}: cannot read the session log: {exc.reason}"
            ) from None
        except OSError as exc:
            raise SessionLogError(
                f"{self.path}: cannot read the session log: {exc.strerror}"
            ) from None
        self._lines = iter_lines(self._file)
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _read_header(self) -> dict[str, Any]:
        first = next(self._lines, None)
        raw = first[1] if first is not None else b""
        if raw is not None:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark from an editor
        if raw is not None and not raw.strip():
            raise SessionLogError(f"{self.path}: empty file, not a session log")
        header: object = None
        why = ""
        if raw is not None:
            header, why = _loads(raw)
        if not isinstance(header, dict) or header.get("kind") != HEADER_KIND:
            detail = f" ({why})" if why else ""
            raise SessionLogError(
                f"{self.path}:1: not a miglab session log (the first line must be a "
                f'"{HEADER_KIND}" object){detail}'
            )
        schema = header.get("schema")
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
            self.warnings.append(
                f"the log is of schema {schema}, newer than this miglab's ({SCHEMA_VERSION}): "
                "what this version does not know is left out; a newer miglab reads it all"
            )
        return header

    def _bad(self, why: str, number: int) -> None:
        self.skipped.add(why, number)
        if len(self.bad_lines) < _BAD_LINES_KEPT:
            self.bad_lines.append(number)

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, object) of each event line whose kind is a string and whose time is
        a time; the end marker, bad lines and a cut-off last line are noted, not given."""
        for number, raw in self._lines:
            if raw is None:
                self._bad(f"longer than {LINE_MAX_BYTES // 2**20} MiB", number)
                continue
            cut = not raw.endswith(b"\n")  # only the last line can lack its newline
            data, why = _loads(raw)
            if why:
                if cut:  # a process killed mid-write: its last partial line is no loss
                    self.truncated_last_line = True
                else:
                    self._bad(why, number)
                continue
            self.truncated_last_line = cut
            if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
                self._bad("not an event object", number)
                continue
            if data["kind"] == END_KIND:
                self.end = data
                continue
            t = data.get("t")
            if t is not None and not (
                isinstance(t, int | float)
                and not isinstance(t, bool)
                and T_MIN <= t <= T_MAX  # False for NaN too
            ):
                self._bad("a time that is not a time (NaN, infinite or out of range)", number)
                continue
            yield number, data

    def events(self) -> Iterator[Event]:
        """Each event line as its event (see :meth:`parse`)."""
        for number, data in self.records():
            event = self.parse(number, data)
            if event is not None:
                yield event

    def parse(self, number: int, data: dict[str, Any]) -> Event | None:
        """One record as an event; None (counted in ``skipped``) if it does not validate.

        A kind this miglab knows whose fields do not fit (a sample whose values are not
        numbers) is skipped and counted, not kept as an event nobody looks at.
        """
        try:
            event = parse_event(data)
        except ValidationError:  # not even a generic event
            self._bad("not an event", number)
            return None
        except (RecursionError, ValueError):
            self._bad("not an event (nested too deep or a number too large)", number)
            return None
        if isinstance(event, UnknownEvent):
            why = _why_invalid(data)
            if why is not None:
                self.skipped.add(f"a {data['kind']} event that does not validate: {why}", number)
                return None
        return event


def _loads(raw: bytes) -> tuple[object, str]:
    """(the line's JSON value, "") or (None, why it is not JSON)."""
    try:
        return json.loads(raw.decode("utf-8", errors="replace")), ""
    except RecursionError:
        return None, "nested too deep"
    except json.JSONDecodeError:
        return None, "not JSON"
    except ValueError:  # int() of more than 4300 digits
        return None, "a number too long"


def _why_invalid(data: dict[str, Any]) -> str | None:
    """Why an event of a known kind does not validate as it; None for an unknown kind."""
    cls = KINDS.get(data["kind"])
    if cls is None:
        return None
    try:
        cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"]))
        return f"{where}: {first['msg']}" if where else first["msg"]
    except (RecursionError, ValueError):
        return "nested too deep or a number too large"
    return None


def read_session(path: str | os.PathLike[str]) -> Session:
    """Load a whole session log, tolerating a truncated last line (blocking: use to_thread).

    Holds every event in memory; to go through a large log, use :class:`SessionLog`.
    """
    with SessionLog(path) as log:
        events = list(log.events())
        return Session(
            path=log.path,
            header=log.header,
            events=events,
            end=log.end,
            truncated_last_line=log.truncated_last_line,
            bad_lines=log.bad_lines,
            skipped=log.skipped,
            warnings=log.warnings,
        )
