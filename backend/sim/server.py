"""One simulated machine as an SSH server (asyncssh, in-process, on a loopback port).

It takes what ``ssh host CMD`` sends: an exec request whose command line is
``shlex.join(argv)``. The line is split back into argv and run on the machine's
:class:`~backend.sim.world.World`; output streams back as the program prints it, on
the simulated clock; the exit status ends the channel. Closing the channel (the client
cancelling) stops the program. A session without a command gets a small prompt that
runs one command per line, for people poking around by hand.

Only ``root`` with the simulation's key gets in, as on a lab host set up for miglab.
The guest's server refuses connections while the guest is not up (booting, shut
down), and drops its sessions when the guest goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from typing import Any

from backend.sim.commands.base import Stream
from backend.sim.model import Model
from backend.sim.world import Node, World
from backend.transport.sshlib import asyncssh

USER = "root"
log = logging.getLogger(__name__)


class ChannelGone(Exception):
    """The client closed the channel while the program was printing."""


class _ChannelOutput:
    def __init__(self, process: asyncssh.SSHServerProcess[str]) -> None:
        self._process = process

    async def write(self, stream: Stream, text: str) -> None:
        writer = self._process.stdout if stream == "stdout" else self._process.stderr
        try:
            writer.write(text)
            await writer.drain()
        except (OSError, asyncssh.Error) as exc:
            raise ChannelGone(str(exc)) from exc


class _Session(asyncssh.SSHServer):
    def __init__(self, owner: SimSshServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        if not self._owner.accepting():
            conn.abort()  # nothing listens: the guest is not up
            return
        self._owner.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner.connections.discard(self._conn)

    def unix_connection_requested(self, dest_path: str) -> Any:
        # A stream to a Unix socket on the host (QMP): OpenSSH allows it by default.
        return self._owner.unix_stream(dest_path)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == USER and key.public_data == self._owner.client_key.public_data


class SimSshServer:
    """The SSH server of one simulated machine."""

    def __init__(
        self,
        world: World,
        node: Node,
        host_key: asyncssh.SSHKey,
        client_key: asyncssh.SSHKey,
        address: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.world = world
        self.node = node
        self.host_key = host_key
        self.client_key = client_key
        self.address = address
        self.port = port
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._acceptor = await asyncssh.create_server(
            lambda: _Session(self),
            self.address,
            self.port,
            server_host_keys=[self.host_key],
            process_factory=self._process,
            encoding="utf-8",
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            keepalive_interval=0,
        )
        self.port = int(self._acceptor.sockets[0].getsockname()[1])
        if self.node.role == "guest":
            self.world.runtime.on_tick(self._guest_watch)

    def accepting(self) -> bool:
        # A guest stopped for a migration's last round still exists: a connection made
        # then just waits (its SYN is retried); one that is down or booting is refused.
        return self.node.role != "guest" or self.world.model.guest.status == "running"

    def _guest_watch(self, model: Model) -> None:
        if model.guest.status == "off" and self.connections:
            for conn in list(self.connections):
                conn.abort()  # powered off: its TCP connections die with it
            self.connections.clear()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self.connections):
            conn.abort()
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None

    def unix_stream(self, path: str) -> Any:
        """What answers at the Unix socket ``path`` (a QEMU's QMP), or False: refused."""
        from backend.sim import qmp_server
        from backend.sim.commands import qemu

        proc = qemu.listening(self.world, self.node, path)
        if proc is None:
            return False

        async def session(reader: asyncssh.SSHReader[str], writer: asyncssh.SSHWriter[str]) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                await qmp_server.serve(self.world, self.node, proc, reader, writer)
            finally:
                if task is not None:
                    self._tasks.discard(task)

        return session

    # -- sessions -------------------------------------------------------------------------

    async def _process(self, process: asyncssh.SSHServerProcess[str]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if process.command is None:
                await self._interactive(process)
            else:
                process.exit(await self._run_line(process, process.command))
        except (ChannelGone, asyncio.CancelledError):
            process.close()
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _run_line(self, process: asyncssh.SSHServerProcess[str], line: str) -> int:
        """Run one command line until it ends or the client closes the channel."""
        try:
            argv = shlex.split(line)
        except ValueError:
            process.stderr.write(_unmatched_quote(line))
            return 2
        running = asyncio.ensure_future(
            self.world.execute(self.node, argv, _ChannelOutput(process))
        )
        closed = asyncio.ensure_future(process.wait_closed())
        try:
            await asyncio.wait({running, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not running.done():
                running.cancel()
            closed.cancel()
            with contextlib.suppress(asyncio.CancelledError, ChannelGone):
                await running
        if running.cancelled() or isinstance(running.exception(), ChannelGone):
            raise ChannelGone("closed")
        error = running.exception()
        if error is not None:
            log.error("simulated %s failed on %s", shlex.join(argv), self.node.name, exc_info=error)
            process.stderr.write(f"miglab sim: internal error in {argv[0]}: {error!r}\n")
            return 70  # EX_SOFTWARE
        return running.result()

    async def _interactive(self, process: asyncssh.SSHServerProcess[str]) -> None:
        prompt = f"{USER}@{self.node.name}:~# "
        process.stdout.write(
            f"miglab simulated lab: {self.node.name} ({self.node.role}). "
            "One command per line; exit to leave.\n"
        )
        status = 0
        while True:
            process.stdout.write(prompt)
            try:
                line = await process.stdin.readline()
            except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
                continue
            except asyncssh.SignalReceived:
                continue
            if not line:
                break
            line = line.strip()
            if line in ("exit", "logout"):
                break
            if line:
                status = await self._run_line(process, line)
        process.exit(status)


def _unmatched_quote(line: str) -> str:
    """What bash (5.2, as ``bash -c LINE``) says of a line whose quote never closes."""
    quote: str | None = None
    escaped = False
    for char in line:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is None and char in "'\"":
            quote = char
        elif char == quote:
            quote = None
    if quote is None:  # a trailing backslash: bash would wait for the next line
        return "bash: -c: line 2: syntax error: unexpected end of file\n"
    return f"bash: -c: line 1: unexpected EOF while looking for matching `{quote}'\n"
