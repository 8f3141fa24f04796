"""``address = "local"``: commands run as subprocesses of the console itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence

from backend.aio import wait_for
from backend.events import HostState
from backend.transport.base import (
    CommandRecorder,
    CommandResult,
    HostRunner,
    LineCallback,
    Publish,
    Stream,
    StreamReaderLike,
    StreamWriterLike,
)

# After SIGTERM, how long a stopped command gets before SIGKILL.
KILL_GRACE_S = 2.0


async def _pump(reader: asyncio.StreamReader, stream: Stream, recorder: CommandRecorder) -> None:
    decoder_errors = "replace"
    while chunk := await reader.read(65536):
        recorder.feed(stream, chunk.decode("utf-8", decoder_errors))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class LocalRunner(HostRunner):
    """Same interface as an SSH host; each command is its own process group."""

    def __init__(self, name: str, publish: Publish) -> None:
        self.name = name
        self._publish = publish
        self._running: set[asyncio.subprocess.Process] = set()
        publish(HostState(host=name, state="connected", rtt_ms=0.0))

    @property
    def connected(self) -> bool:
        return True

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
        recorder = CommandRecorder(
            self.name, argv, self._publish, "local", on_line, log_output, redact
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, so a stop reaches children
            )
        except OSError as exc:
            # Like a shell: a missing program is exit 127 with the reason on stderr.
            recorder.feed("stderr", f"{argv[0]}: {exc.strerror}\n")
            return recorder.finish(127 if isinstance(exc, FileNotFoundError) else 126)
        self._running.add(process)
        assert process.stdout is not None and process.stderr is not None
        pumps = asyncio.gather(
            _pump(process.stdout, "stdout", recorder), _pump(process.stderr, "stderr", recorder)
        )
        try:
            await wait_for(asyncio.shield(pumps), timeout)
            status = await process.wait()
        except TimeoutError:
            await self._stop(process)
            await pumps
            return recorder.finish(None, "timeout")
        except asyncio.CancelledError:
            await asyncio.shield(self._stop(process))
            recorder.finish(None, "cancelled")
            raise
        finally:
            self._running.discard(process)
        return recorder.finish(status)

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await wait_for(process.wait(), KILL_GRACE_S)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()

    async def open_unix_stream(self, path: str) -> tuple[StreamReaderLike, StreamWriterLike]:
        return await asyncio.open_unix_connection(path)

    async def close(self) -> None:
        await asyncio.gather(*(self._stop(p) for p in list(self._running)))
        self._publish(HostState(host=self.name, state="closed"))
