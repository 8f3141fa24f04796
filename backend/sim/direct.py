"""A :class:`~backend.transport.base.HostRunner` straight onto a simulated host, no SSH.

The drivers talk to hosts through runners; over SSH in ``miglab run --sim``, and through
this one where the simulated lab runs on the virtual clock (the tests' ``sim_experiment``):
a command is the host's program run in this process (:meth:`World.execute`), a Unix
socket stream is a socket pair with the simulated QEMU's QMP session at its other end.
So the real drivers (hv_qemu's QMP client, its policy and polling) drive the prediction.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

from backend.sim import qmp_server
from backend.sim.commands import qemu
from backend.sim.commands.base import Captured
from backend.sim.world import Node, World
from backend.transport.base import (
    CommandResult,
    HostRunner,
    LineCallback,
    StreamReaderLike,
    StreamWriterLike,
    TransportError,
)


class DirectRunner(HostRunner):
    """Runs commands on one simulated host of ``world``, in this process."""

    def __init__(self, world: World, node: Node) -> None:
        self.world = world
        self.node = node
        self.name = node.name
        self._sessions: set[asyncio.Task[None]] = set()

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
        out = Captured(self.world.runtime)
        started = self.world.runtime.now()
        code = await self.world.execute(self.node, list(argv), out)
        if on_line is not None:
            for _, stream, line in out.lines:
                on_line(stream, line)
        return CommandResult(
            self.name,
            list(argv),
            code,
            out.text("stdout"),
            out.text("stderr"),
            self.world.runtime.now() - started,
        )

    async def open_unix_stream(self, path: str) -> tuple[StreamReaderLike, StreamWriterLike]:
        proc = qemu.listening(self.world, self.node, path)
        if proc is None:
            raise TransportError(self.name, f"cannot open unix socket {path}: Connection refused")
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours)
        peer_reader, peer_writer = await asyncio.open_connection(sock=theirs)
        task = asyncio.ensure_future(
            qmp_server.serve(self.world, self.node, proc, peer_reader, peer_writer)
        )
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)
        return reader, writer

    async def close(self) -> None:
        for task in list(self._sessions):
            task.cancel()

    @property
    def connected(self) -> bool:
        return True
