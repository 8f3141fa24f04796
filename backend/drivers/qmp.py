"""An asyncio client for QEMU's QMP, over any byte stream.

The client takes a (reader, writer) pair rather than a socket path, so the same code
talks to a local QEMU (``asyncio.open_unix_connection``) and to one on another host
through an SSH connection (asyncssh's ``conn.open_unix_connection(path)``, which yields
bytes streams with the same ``read`` / ``write`` / ``drain`` / ``close``; keep its
default ``encoding=None``: the client reads and writes bytes).

What QEMU does on the wire (seen in tests/data/qmp, QEMU 7.2):

- a greeting ``{"QMP": {...}}``; nothing else is accepted before ``qmp_capabilities``;
- one JSON object per line; replies carry the ``id`` of their command, and events
  (``{"event": ..., "timestamp": ...}``) may come at any time, even between a command
  and its reply (``migrate`` emits ``MIGRATION {"status": "setup"}`` before replying);
- after ``quit`` QEMU sends ``SHUTDOWN`` and the reply, then resets the connection.

A single reader task routes every message: replies to the future waiting on that id,
events to :attr:`QmpClient.events` (a bounded queue), the ``on_event`` callback and any
:meth:`QmpClient.wait_event` waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from backend.aio import wait_for

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
_MAX_LINE = 64 * 1024 * 1024  # query-qmp-schema is ~200 kB; this only bounds garbage


class QmpReader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class QmpWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class QmpError(Exception):
    """QEMU answered a command with an error: ``error_class`` is e.g. ``GenericError``."""

    def __init__(self, error_class: str, desc: str, command: str | None = None) -> None:
        super().__init__(
            f"{command}: {error_class}: {desc}" if command else f"{error_class}: {desc}"
        )
        self.error_class = error_class
        self.desc = desc
        self.command = command


class QmpTimeoutError(asyncio.TimeoutError):
    """No reply within the command's timeout (the connection stays usable)."""


class QmpConnectionError(ConnectionError):
    """The connection is closed, or closed while a command waited for its reply."""


class QmpProtocolError(Exception):
    """The peer does not speak QMP (no greeting, or a line that is not a JSON object)."""


# -- typed messages --------------------------------------------------------------------


class QmpEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    data: dict[str, Any] = Field(default_factory=dict)
    timestamp: float | None = None  # QEMU's wall clock, seconds since the epoch

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> QmpEvent:
        stamp = message.get("timestamp")
        seconds = None
        if isinstance(stamp, Mapping) and "seconds" in stamp:
            seconds = stamp["seconds"] + stamp.get("microseconds", 0) / 1e6
        return cls(name=message["event"], data=message.get("data") or {}, timestamp=seconds)


class QmpGreeting(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: dict[str, Any] = Field(default_factory=dict)
    capabilities: list[str] = Field(default_factory=list)

    @property
    def qemu_version(self) -> str:
        """``7.2.22``, or ``?`` when the greeting did not say."""
        qemu = self.version.get("qemu", {})
        try:
            return f"{qemu['major']}.{qemu['minor']}.{qemu['micro']}"
        except (KeyError, TypeError):
            return "?"


class _Hyphenated(BaseModel):
    # QMP spells members with hyphens; Python gets underscores.
    model_config = ConfigDict(
        frozen=True,
        populate_by_name=True,
        alias_generator=lambda name: name.replace("_", "-"),
        extra="ignore",
    )


class RamStats(_Hyphenated):
    """``query-migrate``'s ``ram`` member; byte counts, ``mbps`` in megabits per second."""

    transferred: int | None = None
    remaining: int | None = None
    total: int | None = None
    duplicate: int | None = None  # zero pages, sent as a flag
    normal: int | None = None
    normal_bytes: int | None = None
    mbps: float | None = None
    dirty_sync_count: int | None = None  # 1 + the number of completed dirty-page passes
    dirty_pages_rate: int | None = None  # pages per second
    page_size: int | None = None
    pages_per_second: int | None = None
    precopy_bytes: int | None = None
    downtime_bytes: int | None = None  # sent during the stop-and-copy phase


class MigrationStatus(_Hyphenated):
    """``query-migrate``: every field is optional, QEMU includes what the state has.

    Times are in milliseconds. ``downtime_ms`` exists once the migration completed;
    ``expected_downtime_ms`` is QEMU's estimate while it is active.
    """

    status: str = "none"  # none|setup|active|completed|failed|cancelling|cancelled|...
    total_time_ms: int | None = Field(default=None, alias="total-time")
    downtime_ms: int | None = Field(default=None, alias="downtime")
    expected_downtime_ms: int | None = Field(default=None, alias="expected-downtime")
    setup_time_ms: int | None = Field(default=None, alias="setup-time")
    ram: RamStats | None = None
    cpu_throttle_percentage: int | None = None
    error_desc: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    @property
    def active(self) -> bool:
        return self.status in ("setup", "active", "pre-switchover", "device", "cancelling")


class VmStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    status: str  # running|paused|inmigrate|postmigrate|shutdown|...
    running: bool


# -- the client ------------------------------------------------------------------------

_Waiter = tuple[str, Callable[[QmpEvent], bool] | None, "asyncio.Future[QmpEvent]"]


class QmpClient:
    """One QMP session. Use :meth:`connect` / :meth:`connect_unix`, or construct and
    :meth:`start`; close with :meth:`close` or ``async with``."""

    def __init__(
        self,
        reader: QmpReader,
        writer: QmpWriter,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        on_event: Callable[[QmpEvent], object] | None = None,
        max_queued_events: int = 1024,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.timeout = timeout
        self._on_event = on_event
        # Bounded, dropping the oldest: a queue nobody drains must not grow forever.
        self.events: asyncio.Queue[QmpEvent] = asyncio.Queue(max_queued_events)
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._waiters: list[_Waiter] = []
        self._write_lock = asyncio.Lock()
        self._greeting: asyncio.Future[QmpGreeting] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None

    # -- lifecycle

    @classmethod
    async def connect(cls, reader: QmpReader, writer: QmpWriter, **kwargs: Any) -> QmpClient:
        client = cls(reader, writer, **kwargs)
        try:
            await client.start()
        except BaseException:
            await client.close()
            raise
        return client

    @classmethod
    async def connect_unix(cls, path: Path | str, **kwargs: Any) -> QmpClient:
        """Connect to a local QMP socket (``-qmp unix:PATH,server=on,wait=off``)."""
        reader, writer = await asyncio.open_unix_connection(str(path))
        return await cls.connect(reader, writer, **kwargs)

    async def start(self) -> QmpGreeting:
        """Read the greeting and leave capabilities negotiation mode."""
        if self._task is not None:
            raise RuntimeError("QMP client already started")
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        try:
            greeting = await wait_for(asyncio.shield(self._greeting), self.timeout)
        except asyncio.TimeoutError:
            raise QmpTimeoutError(f"no QMP greeting within {self.timeout} s") from None
        await self.execute("qmp_capabilities")
        return greeting

    @property
    def greeting(self) -> QmpGreeting | None:
        done = self._greeting.done() and not self._greeting.exception()
        return self._greeting.result() if done else None

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    async def close(self) -> None:
        """Close the stream and stop the reader; pending commands fail. Idempotent."""
        self._shutdown("closed by the client")
        with contextlib.suppress(Exception):
            self._writer.close()
            wait_closed = getattr(self._writer, "wait_closed", None)
            if wait_closed is not None:
                await wait_for(wait_closed(), 5)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def __aenter__(self) -> QmpClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- commands

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``command`` and return its ``return`` member (a dict for most commands,
        a list for some queries). Raises :class:`QmpError` when QEMU says no,
        :class:`QmpTimeoutError` after ``timeout`` (default: the client's)."""
        if self._task is None:
            raise RuntimeError("QMP client not started")
        if self._closed_reason is not None:
            raise QmpConnectionError(f"QMP connection {self._closed_reason}")
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = (command, future)
        message: dict[str, Any] = {"execute": command, "id": ident}
        if arguments is not None:
            message["arguments"] = dict(arguments)
        limit = self.timeout if timeout is None else timeout
        try:
            async with self._write_lock:
                self._writer.write(json.dumps(message).encode() + b"\r\n")
                await self._writer.drain()
            return await wait_for(future, limit)
        except asyncio.TimeoutError:
            raise QmpTimeoutError(f"{command}: no reply within {limit} s") from None
        except (ConnectionError, OSError) as exc:
            if isinstance(exc, QmpConnectionError):
                raise
            raise QmpConnectionError(f"{command}: {exc}") from exc
        finally:
            self._pending.pop(ident, None)

    # -- events

    def event_waiter(
        self, name: str, predicate: Callable[[QmpEvent], bool] | None = None
    ) -> asyncio.Future[QmpEvent]:
        """A future for the next event ``name`` (that ``predicate`` accepts). Create it
        before the command that causes the event, so a quick event is not missed."""
        future: asyncio.Future[QmpEvent] = asyncio.get_running_loop().create_future()
        if self._closed_reason is not None:
            future.set_exception(QmpConnectionError(f"QMP connection {self._closed_reason}"))
        else:
            self._waiters.append((name, predicate, future))
        return future

    async def wait_event(
        self,
        name: str,
        predicate: Callable[[QmpEvent], bool] | None = None,
        *,
        timeout: float | None = None,
    ) -> QmpEvent:
        """Wait for the next event ``name`` arriving from now on."""
        future = self.event_waiter(name, predicate)
        limit = self.timeout if timeout is None else timeout
        try:
            return await wait_for(future, limit)
        except asyncio.TimeoutError:
            raise QmpTimeoutError(f"no {name} event within {limit} s") from None
        finally:
            self._waiters = [w for w in self._waiters if w[2] is not future]

    # -- the reader

    async def _read_loop(self) -> None:
        buffer = b""
        reason = "closed by QEMU"
        try:
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > _MAX_LINE:
                    raise QmpProtocolError("a QMP message longer than 64 MiB")
                for line in lines:
                    if line.strip():
                        self._dispatch(_parse(line))
        except asyncio.CancelledError:
            reason = "closed by the client"
            raise
        except (ConnectionError, OSError) as exc:
            # QEMU resets the socket right after answering "quit".
            reason = f"lost: {exc}"
        except QmpProtocolError as exc:
            reason = f"broken: {exc}"
            log.warning("QMP: %s", exc)
        except Exception as exc:  # a message our models reject: end cleanly, say why
            reason = f"broken: {exc!r}"
            log.exception("QMP reader failed")
        finally:
            self._shutdown(reason)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "QMP" in message:
            if not self._greeting.done():
                self._greeting.set_result(QmpGreeting.model_validate(message["QMP"]))
            return
        if not self._greeting.done():
            raise QmpProtocolError(f"expected the QMP greeting, got {message!r:.200}")
        if "event" in message:
            self._deliver(QmpEvent.from_message(message))
            return
        if "return" not in message and "error" not in message:
            log.debug("QMP: ignored message %r", message)
            return
        ident = message.get("id")
        entry = self._pending.get(ident) if isinstance(ident, int) else None
        if entry is None and ident is None and len(self._pending) == 1:
            # QEMU omits the id only when it could not parse the command at all.
            entry = next(iter(self._pending.values()))
        if entry is None:
            log.debug("QMP: reply to a command no longer waited for: %r", message)
            return
        command, future = entry
        if future.done():
            return
        if "error" in message:
            error = message["error"] or {}
            future.set_exception(
                QmpError(str(error.get("class", "?")), str(error.get("desc", "")), command)
            )
        else:
            future.set_result(message["return"])

    def _deliver(self, event: QmpEvent) -> None:
        if self.events.full():
            self.events.get_nowait()
        self.events.put_nowait(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a broken subscriber must not stop the reader
                log.exception("QMP event callback failed on %s", event.name)
        for name, predicate, future in list(self._waiters):
            if name == event.name and not future.done():
                if predicate is None or predicate(event):
                    future.set_result(event)
                    self._waiters = [w for w in self._waiters if w[2] is not future]

    def _shutdown(self, reason: str) -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        error = QmpConnectionError(f"QMP connection {reason}")
        if not self._greeting.done():
            self._greeting.set_exception(error)
            self._greeting.exception()  # retrieved: nobody may be waiting for it
        for _command, future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        for _name, _predicate, future in self._waiters:
            if not future.done():
                future.set_exception(error)
        self._waiters.clear()

    # -- typed helpers

    async def query_status(self) -> VmStatus:
        return VmStatus.model_validate(await self.execute("query-status"))

    async def query_migrate(self) -> MigrationStatus:
        return MigrationStatus.model_validate(await self.execute("query-migrate"))

    async def query_migrate_parameters(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.execute("query-migrate-parameters")
        return result

    async def migrate_set_parameters(
        self,
        *,
        max_bandwidth_bytes: int | None = None,
        downtime_limit_ms: int | None = None,
        other: Mapping[str, Any] | None = None,
    ) -> None:
        """``max-bandwidth`` is bytes per second (100 Mbit/s = 12_500_000);
        ``other`` passes further parameters under their QMP names."""
        params: dict[str, Any] = dict(other or {})
        if max_bandwidth_bytes is not None:
            params["max-bandwidth"] = int(max_bandwidth_bytes)
        if downtime_limit_ms is not None:
            params["downtime-limit"] = int(downtime_limit_ms)
        if params:
            await self.execute("migrate-set-parameters", params)

    async def migrate_set_capabilities(self, capabilities: Mapping[str, bool]) -> None:
        """E.g. ``{"events": True, "auto-converge": True}``."""
        caps = [{"capability": name, "state": bool(on)} for name, on in capabilities.items()]
        await self.execute("migrate-set-capabilities", {"capabilities": caps})

    async def migrate(self, uri: str) -> None:
        """Start a migration (``tcp:HOST:PORT``); it runs on, follow it with
        :meth:`query_migrate` or ``MIGRATION`` events."""
        await self.execute("migrate", {"uri": uri})

    async def migrate_cancel(self) -> None:
        await self.execute("migrate_cancel")

    async def stop(self) -> None:
        await self.execute("stop")

    async def cont(self) -> None:
        await self.execute("cont")

    async def quit(self, *, timeout: float | None = None) -> None:
        """Ask QEMU to exit, then close. A connection lost while waiting for the reply
        counts as success: QEMU closes it as it goes."""
        try:
            await self.execute("quit", timeout=timeout)
        except QmpConnectionError:
            pass
        await self.close()


# A string, or a bare non-finite number as C's printf spells it. QEMU before 2.6 or so
# wrote doubles with "%f" and sent ``"cache-miss-rate": -nan`` (Launchpad bug 1585533).
_NON_FINITE = re.compile(
    rb'"(?:[^"\\]|\\.)*"|(?<![\w.])[-+]?(?:nan|inf(?:inity)?)(?![\w.])', re.IGNORECASE
)


def _null_if_non_finite(match: re.Match[bytes]) -> bytes:
    token = match[0]
    return token if token.startswith(b'"') else b"null"


def _null(_constant: str) -> None:
    return None


def loads(data: bytes | str) -> Any:
    """JSON as QEMU sends it: a NaN or an infinity (``-nan``, ``nan``, ``inf``, which is
    not JSON, or ``NaN``/``Infinity``) reads as null, as no number can be read from it.
    Raises ``ValueError`` as :func:`json.loads` does for anything else."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        return json.loads(raw, parse_constant=_null)
    except json.JSONDecodeError:
        patched = _NON_FINITE.sub(_null_if_non_finite, raw)
        if patched == raw:
            raise
        return json.loads(patched, parse_constant=_null)


def _parse(line: bytes) -> dict[str, Any]:
    try:
        message = loads(line)
    except ValueError as exc:
        raise QmpProtocolError(f"not JSON: {line[:200]!r}") from exc
    except RecursionError:
        raise QmpProtocolError(f"nested too deep to read: {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise QmpProtocolError(f"not a JSON object: {line[:200]!r}")
    return message
