"""What every way of running a command on a host has in common.

A :class:`HostRunner` runs an argv on one host and returns a
:class:`CommandResult`; while it runs, a :class:`CommandRecorder` turns it
into events (``command.started``, ``command.output`` per line, and
``command.finished`` with the exit status, duration and the tails of both
streams). Subclasses only move bytes: local subprocesses, pooled remote
shells, SSH exec channels.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import shlex
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, Protocol

from backend.events import CommandFinished, CommandOutput, CommandStarted, Event, now

Publish = Callable[[Event], None]
Stream = Literal["stdout", "stderr"]
LineCallback = Callable[[Stream, str], None]

TAIL_LINES = 20
# A command's lines are logged as events up to this many lines and characters; past
# either, one closing line says how much was left out (a runaway `cat` must not flood
# the session log).
MAX_LOGGED_LINES = 5000
MAX_LOGGED_CHARS = 2 * 1024 * 1024
# Each line (in events, in the tails, for on_line) is kept up to this many characters;
# the rest is dropped and the line ends with a cut marker saying how much.
MAX_LINE_CHARS = 16 * 1024
# The full output kept in a CommandResult; past it the start is dropped.
MAX_KEPT_BYTES = 16 * 1024 * 1024

_command_ids = itertools.count(1)

_polling: ContextVar[bool] = ContextVar("miglab_polling", default=False)


@contextlib.contextmanager
def polling() -> Iterator[None]:
    """Commands started inside (in this task and the tasks it starts) are routine
    read-only looks: their ``command.started`` says ``poll``, so the console can keep
    them out of its command pane while the session log keeps them all. A context
    variable, so no runner's ``run`` needs to be told."""
    token = _polling.set(True)
    try:
        yield
    finally:
        _polling.reset(token)


def cut_marker(chars: int) -> str:
    """What ends a line that was cut: how many characters were dropped."""
    return f"…[cut {chars} chars]"


@dataclass
class CommandResult:
    host: str
    argv: list[str]
    exit_status: int | None
    stdout: str
    stderr: str
    duration_s: float
    failure: str | None = None  # "timeout", "cancelled", "connection lost: ..."
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None and self.exit_status == 0

    def check(self) -> CommandResult:
        """Return self if the command succeeded, else raise :class:`CommandFailed`."""
        if not self.ok:
            raise CommandFailed(self)
        return self


class TransportError(Exception):
    """A host could not be reached or its connection failed."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


class Expired(Exception):
    """A command's deadline passed before it started; the message says what it waited for."""


def command_line(argv: Sequence[str]) -> str:
    """``shlex.join(argv)`` with the program name always quoted.

    shlex leaves a plain word bare, and a bare first word can be a reserved word
    (``if``, ``case``: a syntax error that kills a pooled shell) or an assignment
    (``A=b``); a quoted word is always just a command name.
    """
    if not argv:
        raise ValueError("an empty argv is not a command")
    program = shlex.quote(argv[0])
    if program == argv[0]:
        program = f"'{program}'"  # a bare word has no quote in it to escape
    return " ".join([program, *(shlex.quote(arg) for arg in argv[1:])])


class CommandFailed(Exception):
    """A remote command failed; the message names the host, the command and its stderr."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        if result.failure is not None:
            why = result.failure
        else:
            why = f"exit status {result.exit_status}"
        stderr = result.stderr.strip()
        detail = f": {stderr[-2000:]}" if stderr else ""
        super().__init__(f"{result.host}: `{shlex.join(result.argv)}` failed ({why}){detail}")


class _Capture:
    """Accumulates one stream, splits it into lines, keeps a tail and a bounded copy.

    A line longer than MAX_LINE_CHARS is kept as its first MAX_LINE_CHARS characters
    followed by a cut marker. A partial line is held as a list of pieces, never by
    concatenating, so a line of any length costs time linear in its length.
    """

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._held = 0  # characters in _pieces
        self._cut = 0  # characters of the current line dropped past MAX_LINE_CHARS
        self._chunks: deque[str] = deque()
        self._kept = 0
        self.truncated = False
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, text: str) -> list[str]:
        if not text:
            return []
        self._chunks.append(text)
        self._kept += len(text)
        while self._kept > MAX_KEPT_BYTES and len(self._chunks) > 1:
            self._kept -= len(self._chunks.popleft())
            self.truncated = True
        *complete, rest = text.split("\n")
        lines = []
        for piece in complete:
            self._hold(piece)
            lines.append(self._take())
        self._hold(rest)
        self.tail.extend(lines)
        return lines

    def _hold(self, piece: str) -> None:
        room = MAX_LINE_CHARS - self._held
        if len(piece) > room:
            self._cut += len(piece) - room
            piece = piece[:room]
        if piece:
            self._pieces.append(piece)
            self._held += len(piece)

    def _take(self) -> str:
        line = "".join(self._pieces)
        if self._cut:
            line += cut_marker(self._cut)
        self._pieces.clear()
        self._held = self._cut = 0
        return line

    def close(self) -> list[str]:
        if not self._pieces and not self._cut:
            return []
        last = self._take()
        self.tail.append(last)
        return [last]

    def text(self) -> str:
        return "".join(self._chunks)


class CommandRecorder:
    """Turns one command's life into events and a :class:`CommandResult`."""

    def __init__(
        self,
        host: str,
        argv: Sequence[str],
        publish: Publish,
        channel: Literal["pool", "exec", "local"],
        on_line: LineCallback | None = None,
        log_output: bool = True,
        redact: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.argv = list(argv)
        self._redact = [secret for secret in redact if secret]
        self.cmd_id = next(_command_ids)
        self._publish = publish
        self._on_line = on_line
        self._log_output = log_output
        self._logged = 0
        self._logged_chars = 0
        self._unlogged: dict[Stream, tuple[int, int]] = {}  # lines, chars left out
        self._streams: dict[Stream, _Capture] = {"stdout": _Capture(), "stderr": _Capture()}
        self._started = now()  # the event clock: durations agree with event times
        self.result: CommandResult | None = None
        publish(
            CommandStarted(
                host=host,
                cmd_id=self.cmd_id,
                argv=self._hide_all(self.argv),
                channel=channel,
                poll=_polling.get(),
            )
        )

    def _hide(self, text: str) -> str:
        for secret in self._redact:
            text = text.replace(secret, "***")
        return text

    def _hide_all(self, texts: Sequence[str]) -> list[str]:
        return [self._hide(text) for text in texts] if self._redact else list(texts)

    def feed(self, stream: Stream, text: str) -> None:
        self._emit(stream, self._streams[stream].feed(text))

    def _emit(self, stream: Stream, lines: list[str]) -> None:
        for line in lines:
            if self._on_line is not None:
                self._on_line(stream, line)
            if not self._log_output:
                continue
            if self._logged < MAX_LOGGED_LINES and self._logged_chars < MAX_LOGGED_CHARS:
                self._logged += 1
                self._logged_chars += len(line)
                self._output(stream, self._hide(line))
            else:
                count, chars = self._unlogged.get(stream, (0, 0))
                self._unlogged[stream] = (count + 1, chars + len(line))

    def _output(self, stream: Stream, line: str) -> None:
        self._publish(CommandOutput(host=self.host, cmd_id=self.cmd_id, stream=stream, line=line))

    def finish(self, exit_status: int | None, failure: str | None = None) -> CommandResult:
        """Publish command.finished once; a second call returns the first result."""
        if self.result is not None:
            return self.result
        for stream, capture in self._streams.items():
            self._emit(stream, capture.close())
        for stream, (lines, chars) in self._unlogged.items():
            self._output(stream, f"…[{lines} more lines ({chars} chars) not logged]")
        duration = max(0.0, now() - self._started)
        out, err = self._streams["stdout"], self._streams["stderr"]
        self._publish(
            CommandFinished(
                host=self.host,
                cmd_id=self.cmd_id,
                argv=self._hide_all(self.argv),
                exit_status=exit_status,
                duration_s=round(duration, 6),
                failure=failure,
                # Without log_output the output stays out of the log entirely.
                stdout_tail=self._hide_all(out.tail) if self._log_output else [],
                stderr_tail=self._hide_all(err.tail) if self._log_output else [],
            )
        )
        self.result = CommandResult(
            host=self.host,
            argv=self.argv,
            exit_status=exit_status,
            stdout=out.text(),
            stderr=err.text(),
            duration_s=duration,
            failure=failure,
            truncated=out.truncated or err.truncated,
        )
        return self.result


class StreamReaderLike(Protocol):
    """What asyncio's and asyncssh's stream readers have in common."""

    async def read(self, n: int = -1) -> bytes: ...

    async def readline(self) -> bytes: ...


class StreamWriterLike(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class HostRunner(abc.ABC):
    """Runs argv lists on one host. Implementations: local, SSH."""

    name: str

    @abc.abstractmethod
    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = 60.0,
        on_line: LineCallback | None = None,
        log_output: bool = True,
        long_running: bool = False,
        redact: Sequence[str] = (),
    ) -> CommandResult:
        """Run ``argv`` and return its result; never raises for a non-zero exit or a
        transport failure (the result's ``failure`` says why: "timeout", "connection
        lost: ...", "could not open a shell: ...").

        ``timeout`` (seconds, None for none) is one deadline for everything: waiting
        for the connection, for a free shell or channel, opening it, and the command.
        A command past it is stopped with its children (which may add a few seconds,
        bounded); a deadline that passes before the command started gives a failure
        "timeout (what it was waiting for ...)". Cancelling the calling task stops the
        command too (the result is then not returned, the CancelledError propagates
        after the process is stopped).
        ``on_line(stream, line)`` sees every line as it arrives (each capped at
        MAX_LINE_CHARS, as in the events).
        ``long_running`` asks for a dedicated channel (probes, migrations)
        instead of a pooled shell, so short commands never wait behind it.
        ``redact`` lists values (secrets) shown as ``***`` in every event; the
        result itself keeps the real text. ``log_output=False`` keeps the output
        out of the events altogether.
        """

    @abc.abstractmethod
    async def open_unix_stream(self, path: str) -> tuple[StreamReaderLike, StreamWriterLike]:
        """A byte stream to a Unix socket on the host (QEMU's QMP)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop everything this runner started and release the connection."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether commands can be sent right now."""
