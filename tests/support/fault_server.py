"""An in-process asyncssh server that runs commands for real and injects faults.

Every exec request runs as a local ``sh -c COMMAND`` whose streams are relayed,
so miglab's pooled shells and exec channels behave as against a real host.
Faults are triggered by what a command prints, so a test decides exactly when:

- ``FAULT-DROP-NOW`` on stdout: the server aborts the TCP connection (a cable pulled).
- ``FAULT-HANG-NOW`` on stdout: the server stops reading the connection, so it no
  longer answers anything, keepalives included (a host that froze).
- ``slow_bytes = True``: stdout is relayed a few bytes at a time with pauses (a
  slow link), so markers and lines arrive split across reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

DROP = b"FAULT-DROP-NOW"
HANG = b"FAULT-HANG-NOW"


def kill_group(child: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


@dataclass
class FaultServer:
    directory: Path
    slow_bytes: bool = False
    connections: list[asyncssh.SSHServerConnection] = field(default_factory=list)
    dropped: int = 0
    hung: int = 0
    port: int = 0
    _server: Any = None
    _children: set[asyncio.subprocess.Process] = field(default_factory=set)

    async def start(self) -> None:
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key.write_private_key(str(self.client_key))
        authorized = asyncssh.import_authorized_keys(
            client_key.export_public_key("openssh").decode()
        )
        owner = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                owner.connections.append(conn)

        self._server = await asyncssh.create_server(
            Server,
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            authorized_client_keys=authorized,
            process_factory=self._handle,
            encoding=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        pub = host_key.export_public_key("openssh").decode().strip()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {pub}\n")

    @property
    def client_key(self) -> Path:
        return self.directory / "fault_client_key"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "fault_known_hosts"

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        child = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            process.command or "sh",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._children.add(child)
        conn = process.channel.get_connection()
        frozen: list[bool] = []
        assert child.stdin and child.stdout and child.stderr

        async def feed_stdin() -> None:
            with contextlib.suppress(Exception):
                while data := await process.stdin.read(65536):
                    child.stdin.write(data)
                    await child.stdin.drain()
            child.stdin.close()

        async def relay(reader: asyncio.StreamReader, writer: Any, watch: bool) -> None:
            while data := await reader.read(65536):
                if watch and DROP in data:
                    self.dropped += 1
                    conn.abort()
                    kill_group(child)  # the host-side command dies with the link
                    return
                if watch and HANG in data:
                    self.hung += 1
                    frozen.append(True)
                    conn._transport.pause_reading()  # test-only: freeze this connection
                    kill_group(child)
                    return
                if watch and self.slow_bytes:
                    for at in range(0, len(data), 3):
                        writer.write(data[at : at + 3])
                        await asyncio.sleep(0.001)
                else:
                    writer.write(data)

        stdin_task = asyncio.create_task(feed_stdin())
        try:  # a frozen or dropped connection ends the relays early: then stop the command
            await asyncio.gather(
                relay(child.stdout, process.stdout, True),
                relay(child.stderr, process.stderr, False),
            )
            status = await child.wait()
            if not frozen:  # a frozen host says nothing more, not even the exit status
                process.exit(status if status >= 0 else 128 - status)
        except Exception:
            pass
        finally:
            stdin_task.cancel()
            kill_group(child)
            await child.wait()
            self._children.discard(child)

    async def stop(self) -> None:
        for child in list(self._children):
            kill_group(child)
        await asyncio.gather(*(child.wait() for child in list(self._children)))
        for conn in self.connections:
            conn.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
