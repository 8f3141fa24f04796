"""Long-lived remote shells that run short commands without a new SSH session each.

Why: sshd sets up a session for every channel, so even on a kept connection an
exec channel costs ~90 ms on loopback; a shell that is already running answers
in about a millisecond. miglab polls hosts every second while it measures a
guest on them, so that cost would be latency and CPU stolen from the hosts
under test.

The protocol, per command, written to the shell's stdin as one line::

    ARGV </dev/null & p=$!; printf 'TOKEN:N:pid:%d\\n' "$p" >&2; wait "$p"; s=$?;
    printf 'TOKEN:N:rc:%d\\n' "$s"; printf 'TOKEN:N:end\\n' >&2

The command runs as a background job so the shell knows its pid (a timeout or
a cancel kills that process tree from another channel and the shell lives on);
its stdout ends at the ``rc`` marker, its stderr at the ``end`` marker. TOKEN
is random per shell and N counts commands, so output cannot fake a marker.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from backend.aio import wait_for
from backend.transport.base import CommandRecorder, Expired, Stream, command_line


class ByteReader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class ByteWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass
class ShellChannel:
    """The three streams of a remote ``sh`` and a way to close it."""

    stdin: ByteWriter
    stdout: ByteReader
    stderr: ByteReader
    close: Callable[[], None]


# Opens a shell's channel by the deadline (the event loop's clock, None for none).
ChannelOpener = Callable[[float | None], Awaitable[ShellChannel]]
# Kills the process tree rooted at a pid on the host; returns when it is gone.
TreeKiller = Callable[[int], Awaitable[None]]


class ShellDied(Exception):
    """The shell's channel closed under a command (connection lost or shell killed)."""


@dataclass
class _Pending:
    seq: int
    recorder: CommandRecorder
    pid: asyncio.Future[int]
    status: asyncio.Future[int]
    stderr_done: asyncio.Future[None]
    decoders: dict[Stream, codecs.IncrementalDecoder] = field(
        default_factory=lambda: {
            "stdout": codecs.getincrementaldecoder("utf-8")("replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")("replace"),
        }
    )


class RemoteShell:
    """One remote ``sh`` running commands one at a time."""

    def __init__(self, channel: ShellChannel) -> None:
        self._channel = channel
        self._token = b"\x1eMIGLAB" + os.urandom(8).hex().encode()
        self._seq = 0
        self._pending: _Pending | None = None
        self.dead: str | None = None  # why the shell can no longer be used
        self._readers = [
            asyncio.ensure_future(self._read(channel.stdout, "stdout")),
            asyncio.ensure_future(self._read(channel.stderr, "stderr")),
        ]

    def _marker(self, seq: int, what: str) -> bytes:
        return self._token + f":{seq}:{what}:".encode()

    async def run(
        self, argv: Sequence[str], recorder: CommandRecorder
    ) -> tuple[asyncio.Future[int], asyncio.Future[int], asyncio.Future[None]]:
        """Start ``argv``; return futures for its pid, exit status and stderr's end."""
        if self.dead is not None:
            raise ShellDied(self.dead)
        assert self._pending is None, "a RemoteShell runs one command at a time"
        self._seq += 1
        loop = asyncio.get_running_loop()
        pending = _Pending(
            self._seq, recorder, loop.create_future(), loop.create_future(), loop.create_future()
        )
        self._pending = pending
        token = self._token.decode()
        n = self._seq
        line = (
            f"{command_line(argv)} </dev/null & p=$!; "
            f'printf \'{token}:{n}:pid:%d\\n\' "$p" >&2; wait "$p"; s=$?; '
            f"printf '{token}:{n}:rc:%d\\n' \"$s\"; printf '{token}:{n}:end:\\n' >&2\n"
        )
        try:
            self._channel.stdin.write(line.encode())
        except Exception as exc:  # the channel is gone
            self._die(f"write failed: {exc}")
            raise ShellDied(str(exc)) from exc
        return pending.pid, pending.status, pending.stderr_done

    def finished(self) -> None:
        """The caller has its result; the shell takes the next command."""
        self._pending = None

    async def _read(self, reader: ByteReader, stream: Stream) -> None:
        buffer = b""
        try:
            while chunk := await reader.read(65536):
                buffer = self._consume(stream, buffer + chunk)
            reason = "the shell's channel closed"
        except Exception as exc:  # asyncssh raises its own errors on a lost connection
            reason = f"{type(exc).__name__}: {exc}"
        self._die(reason)

    def _consume(self, stream: Stream, buffer: bytes) -> bytes:
        """Feed output to the pending command; act on markers; return what is held back."""
        while True:
            pending = self._pending
            if pending is None:
                return b""  # output between commands (a stray daemon): nobody's, dropped
            at = buffer.find(self._token)
            if at < 0:
                # Hold back a tail that could be the start of a marker split across reads.
                cut = buffer.rfind(self._token[:1], max(0, len(buffer) - len(self._token)))
                if cut < 0 or not self._token.startswith(buffer[cut:]):
                    cut = len(buffer)
                self._feed(pending, stream, buffer[:cut])
                return buffer[cut:]
            end = buffer.find(b"\n", at)
            if end < 0:
                self._feed(pending, stream, buffer[:at])
                return buffer[at:]
            self._feed(pending, stream, buffer[:at])
            self._on_marker(pending, buffer[at:end])
            buffer = buffer[end + 1 :]

    def _feed(self, pending: _Pending, stream: Stream, data: bytes) -> None:
        if data:
            pending.recorder.feed(stream, pending.decoders[stream].decode(data))

    def _on_marker(self, pending: _Pending, marker: bytes) -> None:
        try:
            _token, seq, what, value = marker.decode().split(":", 3)
        except ValueError:
            return
        if int(seq) != pending.seq:
            return  # a late marker of a command we already gave up on
        if what == "pid" and not pending.pid.done():
            pending.pid.set_result(int(value))
        elif what == "rc" and not pending.status.done():
            self._flush(pending, "stdout")
            pending.status.set_result(int(value))
        elif what == "end" and not pending.stderr_done.done():
            self._flush(pending, "stderr")
            pending.stderr_done.set_result(None)

    def _flush(self, pending: _Pending, stream: Stream) -> None:
        """The stream's last bytes: an incomplete UTF-8 sequence becomes U+FFFD, not lost."""
        rest = pending.decoders[stream].decode(b"", final=True)
        if rest:
            pending.recorder.feed(stream, rest)

    def _die(self, reason: str) -> None:
        if self.dead is None:
            self.dead = reason
        pending = self._pending
        if pending is not None:
            for future in (pending.pid, pending.status, pending.stderr_done):
                if not future.done():
                    future.set_exception(ShellDied(reason))
                    future.exception()  # mark retrieved: the caller may already be gone

    def close(self) -> None:
        self._die("closed")
        with contextlib.suppress(Exception):
            self._channel.close()
        for reader in self._readers:
            reader.cancel()


class ShellPool:
    """Up to ``size`` remote shells on one connection, opened on demand, reused."""

    def __init__(self, opener: ChannelOpener, size: int = 4) -> None:
        self._opener = opener
        self._idle: list[RemoteShell] = []
        self._all: set[RemoteShell] = set()
        self._slots = asyncio.Semaphore(size)

    @contextlib.asynccontextmanager
    async def shell(self, deadline: float | None = None) -> AsyncIterator[RemoteShell]:
        """An idle shell or a new one, by ``deadline`` (:class:`Expired` if it passes)."""
        loop = asyncio.get_running_loop()
        wait = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            await wait_for(self._slots.acquire(), wait)
        except TimeoutError:
            raise Expired("waiting for a free shell") from None
        try:
            shell = None
            while self._idle:
                candidate = self._idle.pop()
                if candidate.dead is None:
                    shell = candidate
                    break
                self._discard(candidate)
            if shell is None:
                shell = RemoteShell(await self._opener(deadline))
                self._all.add(shell)
            try:
                yield shell
            finally:
                shell.finished()
                if shell.dead is None:
                    self._idle.append(shell)
                else:
                    self._discard(shell)
        finally:
            self._slots.release()

    def _discard(self, shell: RemoteShell) -> None:
        shell.close()
        self._all.discard(shell)

    def reset(self) -> None:
        """Forget every shell (after the connection they lived on is gone)."""
        for shell in list(self._all):
            self._discard(shell)
        self._idle.clear()

    @property
    def size(self) -> int:
        return len(self._all)
