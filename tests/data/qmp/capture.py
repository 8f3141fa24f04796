"""Record real QMP sessions of a live migration, byte for byte, for tests/unit/test_qmp.py.

Run as root from the project root: ``.venv/bin/python -m tests.data.qmp.capture``.
It boots the miglab guest (backend/sandbox/guest_image.py) under QEMU TCG three times
on loopback: a source, a destination whose migration is cancelled, and a destination
that receives the guest. Raw sockets, not backend/drivers/qmp.py, do the talking so the
transcripts show what QEMU sent rather than what our client understood.

Each ``*.jsonl`` line is ``{"t": seconds, "dir": "c2s" | "s2c", "line": raw JSON text}``;
the last is ``"dir": "eof"`` or ``"reset"``: how QEMU ended the connection.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from backend.drivers.qemu_argv import qemu_guest_argv
from backend.sandbox.guest_image import (
    build_guest_image,
    default_cache_dir,
    wait_for_console,
)

HERE = Path(__file__).parent


class Recorder:
    def __init__(self, path: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.path = path
        self.reader = reader
        self.writer = writer
        self.records: list[dict[str, Any]] = []
        self.start = time.monotonic()
        self.next_id = 1
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.task = asyncio.create_task(self._read())

    def _log(self, direction: str, line: str) -> None:
        t = round(time.monotonic() - self.start, 4)
        self.records.append({"t": t, "dir": direction, "line": line})

    async def _read(self) -> None:
        while True:
            try:
                raw = await self.reader.readline()
            except ConnectionResetError:  # what QEMU does after replying to "quit"
                self._log("reset", "")
                return
            if not raw:
                self._log("eof", "")
                return
            line = raw.decode().rstrip("\r\n")
            self._log("s2c", line)
            msg = json.loads(line)
            if "id" in msg and msg["id"] in self.replies:
                self.replies.pop(msg["id"]).set_result(msg)

    async def cmd(self, execute: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        ident = self.next_id
        self.next_id += 1
        msg: dict[str, Any] = {"execute": execute, "id": ident}
        if arguments is not None:
            msg["arguments"] = arguments
        line = json.dumps(msg)
        self.replies[ident] = asyncio.get_running_loop().create_future()
        self._log("c2s", line)
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await asyncio.wait_for(self.replies[ident], 30)

    async def finish(self) -> None:
        await asyncio.wait_for(self.task, 10)
        text = "".join(json.dumps(r) + "\n" for r in self.records)
        await asyncio.to_thread(self.path.write_text, text)


async def start(argv: list[str], qmp: Path) -> tuple[asyncio.subprocess.Process, Recorder]:
    proc = await asyncio.create_subprocess_exec(*argv)
    for _ in range(100):
        if await asyncio.to_thread(qmp.exists):
            break
        await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_unix_connection(str(qmp))
    return proc, Recorder(HERE / "unnamed.jsonl", reader, writer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def poll_until(rec: Recorder, done: set[str], limit: int = 600) -> None:
    for _ in range(limit):
        reply = await rec.cmd("query-migrate")
        if reply.get("return", {}).get("status") in done:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("migration did not finish")


async def main() -> None:
    image = await build_guest_image(default_cache_dir())
    procs: list[asyncio.subprocess.Process] = []
    with tempfile.TemporaryDirectory(prefix="qmpcap-") as tmp:
        d = Path(tmp)

        def argv(name: str, incoming: str | None) -> list[str]:
            return qemu_guest_argv(
                image,
                memory_mb=256,
                qmp_socket=d / f"{name}.qmp",
                serial_log=d / f"{name}.log",
                incoming=incoming,
                heartbeat_s=1,
            )

        try:
            src_proc, src = await start(argv("src", None), d / "src.qmp")
            procs.append(src_proc)
            src.path = HERE / "source.jsonl"
            await wait_for_console(d / "src.log")

            port1, port2 = free_port(), free_port()
            d1_proc, d1 = await start(argv("d1", f"tcp:127.0.0.1:{port1}"), d / "d1.qmp")
            procs.append(d1_proc)
            d1.path = HERE / "dest-cancelled.jsonl"
            d2_proc, d2 = await start(argv("d2", f"tcp:127.0.0.1:{port2}"), d / "d2.qmp")
            procs.append(d2_proc)
            d2.path = HERE / "dest.jsonl"

            await src.cmd("qmp_capabilities")
            for dest in (d1, d2):
                await dest.cmd("qmp_capabilities")
                await dest.cmd("query-status")
                await dest.cmd(
                    "migrate-set-capabilities",
                    {"capabilities": [{"capability": "events", "state": True}]},
                )

            await src.cmd("query-status")
            await src.cmd("query-migrate")
            await src.cmd("no-such-command")
            await src.cmd("migrate-set-parameters", {"downtime-limit": 9_999_999})
            await src.cmd(
                "migrate-set-capabilities",
                {"capabilities": [{"capability": "events", "state": True}]},
            )

            # A migration that is cancelled: 1 MB/s cannot finish 256 MB in time.
            await src.cmd("migrate-set-parameters", {"max-bandwidth": 1_000_000})
            await src.cmd("migrate", {"uri": f"tcp:127.0.0.1:{port1}"})
            for _ in range(3):
                await asyncio.sleep(0.1)
                await src.cmd("query-migrate")
            await src.cmd("migrate", {"uri": f"tcp:127.0.0.1:{port1}"})  # busy: an error
            await src.cmd("migrate_cancel")
            await poll_until(src, {"cancelled", "failed"})
            await src.cmd("query-status")
            await asyncio.sleep(0.5)

            # The real one, capped at 100 Mbit/s.
            await src.cmd(
                "migrate-set-parameters", {"max-bandwidth": 12_500_000, "downtime-limit": 300}
            )
            await src.cmd("query-migrate-parameters")
            await src.cmd("migrate", {"uri": f"tcp:127.0.0.1:{port2}"})
            await poll_until(src, {"completed", "failed"})
            await src.cmd("query-status")
            await d2.cmd("query-migrate")
            await d2.cmd("query-status")
            await wait_for_console(d / "d2.log", "MIGLAB-HEARTBEAT", timeout=10)
            await src.cmd("quit")
            await d2.cmd("quit")
            for rec in (src, d2):
                await rec.finish()
            await d1.finish()  # d1 exited by itself when the migration was cancelled
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
