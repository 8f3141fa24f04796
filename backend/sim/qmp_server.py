"""The QMP socket of a simulated QEMU: what QEMU 7.2 answers, on the simulated lab's model.

One session per connection, as a QMP socket serves: the greeting, then one JSON object
per line each way (``tests/data/qmp``: QEMU 7.2.22's real sessions). Commands before
``qmp_capabilities`` are refused as QEMU refuses them. What miglab's qemu driver sends
is answered: ``query-status``, ``query-migrate`` (:func:`backend.sim.qmp_replies.
query_migrate` while a migration runs), ``migrate-set-capabilities`` and
``migrate-set-parameters`` (the values a running migration then follows), ``migrate``,
``migrate_cancel``, ``system_powerdown`` and ``quit`` (``SHUTDOWN``, the reply, then the
connection goes, as QEMU resets it). An unknown command gets ``CommandNotFound``.

The session reads lines from any reader with ``readline()`` (an SSH channel's, whose
text is ``str``; an asyncio stream's, ``bytes``) and writes to a writer with ``write``,
``drain`` and ``close``.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any, Protocol

from backend.sim.commands import qemu
from backend.sim.commands.qemu import QemuProcess
from backend.sim.model import SimError
from backend.sim.precopy import QemuSettings
from backend.sim.qmp_replies import query_migrate
from backend.sim.world import Node, World

GREETING = {
    "QMP": {
        "version": {
            "qemu": {"micro": 22, "minor": 2, "major": 7},
            "package": "Debian 1:7.2+dfsg-7+deb12u18+b3",
        },
        "capabilities": ["oob"],
    }
}
MAX_DOWNTIME_MS = 2_000_000
IN_PROGRESS = "There's a migration process in progress"


class LineReader(Protocol):
    async def readline(self) -> Any: ...


class LineWriter(Protocol):
    def write(self, data: Any) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class QmpError(Exception):
    def __init__(self, error_class: str, desc: str) -> None:
        super().__init__(desc)
        self.error_class = error_class
        self.desc = desc


async def serve(
    world: World, node: Node, proc: QemuProcess, reader: LineReader, writer: LineWriter
) -> None:
    """One QMP session with ``proc`` until the client goes or QEMU quits."""
    session = _Session(world, node, proc, writer)
    channel = getattr(writer, "channel", None)  # an SSH channel: text only if it has an encoding
    session.binary = channel is None or channel.get_encoding()[0] is None
    try:
        await session.send(GREETING)
        while True:
            line = await reader.readline()
            if not line:
                break
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            if not text.strip():
                continue
            if not await session.handle(text):
                break
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class _Session:
    def __init__(self, world: World, node: Node, proc: QemuProcess, writer: LineWriter) -> None:
        self.world = world
        self.node = node
        self.proc = proc
        self.writer = writer
        self.negotiated = False
        self.binary = False

    async def send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message) + "\n"
        self.writer.write(text.encode() if self.binary else text)
        await self.writer.drain()

    async def event(self, name: str, data: dict[str, Any] | None = None) -> None:
        wall = self.world.runtime.wall()
        seconds = math.floor(wall)
        stamp = {"seconds": seconds, "microseconds": round((wall - seconds) * 1e6) % 1_000_000}
        message: dict[str, Any] = {"timestamp": stamp, "event": name}
        if data is not None:
            message["data"] = data
        await self.send(message)

    async def handle(self, text: str) -> bool:
        """Answer one request; False when the session ends (``quit``)."""
        try:
            request = json.loads(text)
        except ValueError:
            await self.send({"error": {"class": "GenericError", "desc": "JSON parse error"}})
            return True
        if not isinstance(request, dict) or not isinstance(request.get("execute"), str):
            await self.send(
                {"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}
            )
            return True
        command: str = request["execute"]
        arguments = request.get("arguments") or {}
        ident = {"id": request["id"]} if "id" in request else {}
        qemu.refresh(self.world)
        if self.proc.pid not in qemu.processes(self.node):
            return False  # QEMU exited (the guest powered off): the socket is gone
        try:
            result = await self._execute(command, arguments)
        except QmpError as exc:
            await self.send({**ident, "error": {"class": exc.error_class, "desc": exc.desc}})
            return True
        await self.send({"return": result, **ident})
        return command != "quit"

    async def _execute(self, command: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if not self.negotiated:
            if command != "qmp_capabilities":
                raise QmpError(
                    "CommandNotFound",
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                )
            self.negotiated = True
            return {}
        proc, world = self.proc, self.world
        if command == "qmp_capabilities":
            raise QmpError(
                "CommandNotFound", "Capabilities negotiation is already complete, command ignored"
            )
        if command == "query-status":
            status = qemu.run_status(world, proc)
            return {"status": status, "singlestep": False, "running": status == "running"}
        if command == "query-migrate":
            return self._query_migrate()
        if command == "migrate-set-capabilities":
            if self._migrating():
                raise QmpError("GenericError", IN_PROGRESS)
            for item in arguments.get("capabilities", []):
                proc.capabilities[str(item.get("capability"))] = bool(item.get("state"))
            return {}
        if command == "migrate-set-parameters":
            return self._set_parameters(arguments)
        if command == "migrate":
            return await self._migrate(str(arguments.get("uri", "")))
        if command == "migrate_cancel":
            if self._migrating() and world.model.abort_migration():
                proc.cancelled = True
                qemu.refresh(world)
            return {}
        if command == "system_powerdown":
            if proc.role == "guest" and world.model.guest.status in ("booting", "running"):
                world.model.shutdown(self.node.name)
                await self.event("POWERDOWN")
            return {}
        if command == "quit":
            await self.event("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
            qemu.stop(world, self.node, proc)
            return {}
        raise QmpError("CommandNotFound", f"The command {command} has not been found")

    def _migrating(self) -> bool:
        mig = self.proc.sending
        return mig is not None and not mig.finished and mig.resumed_at is None

    def _query_migrate(self) -> dict[str, Any]:
        proc = self.proc
        if proc.failed is not None:
            return {"status": "failed", "error-desc": proc.failed}
        if proc.cancelled:
            return {"status": "cancelled"}
        if proc.sending is not None:
            return query_migrate(proc.sending, self.world.model.t)
        if proc.receiving is not None:
            return {"status": "completed" if proc.role == "guest" else "active"}
        return {}

    def _set_parameters(self, arguments: dict[str, Any]) -> dict[str, Any]:
        limit = arguments.get("downtime-limit")
        if limit is not None and not (isinstance(limit, int) and 0 <= limit <= MAX_DOWNTIME_MS):
            raise QmpError(
                "GenericError",
                "Parameter 'downtime_limit' expects an integer in the range of 0 to "
                "(2000 * 1000) ms",
            )
        for key, value in arguments.items():
            if isinstance(value, int):
                self.proc.parameters[key] = value
        mig = self.proc.sending
        if mig is not None and not mig.finished:  # a running migration follows them
            if limit is not None:
                mig.downtime_limit_ms = limit
            if mig.settings is not None:
                mig.settings = self._settings()
        return {}

    def _settings(self) -> QemuSettings:
        p, default = self.proc.parameters, QemuSettings()
        return QemuSettings(
            auto_converge=self.proc.capabilities.get("auto-converge", False),
            max_bandwidth=p.get("max-bandwidth", default.max_bandwidth),
            throttle=(
                p.get("cpu-throttle-initial", default.throttle[0]),
                p.get("cpu-throttle-increment", default.throttle[1]),
                p.get("max-cpu-throttle", default.throttle[2]),
            ),
        )

    async def _migrate(self, uri: str) -> dict[str, Any]:
        proc, world = self.proc, self.world
        if self._migrating():
            raise QmpError("GenericError", IN_PROGRESS)
        if proc.role == "incoming":
            raise QmpError("GenericError", "Guest is waiting for an incoming migration")
        if proc.role == "migrated":
            raise QmpError(
                "GenericError", "Can't migrate the vm that was paused due to previous migration"
            )
        if not uri.startswith("tcp:") or qemu._port(uri) is None:
            raise QmpError("GenericError", f"unknown migration protocol: {uri}")
        address = uri[len("tcp:") :].rsplit(":", 1)[0].strip("[]")
        port = qemu._port(uri)
        proc.failed, proc.cancelled, proc.sending = None, False, None
        peer = world.migration_peer(self.node, address)
        listener = None
        if peer is not None and peer.role == "hypervisor":
            listener = next(
                (p for p in qemu.processes(peer).values()
                 if p.role == "incoming" and p.port == port and p.receiving is None),
                None,
            )  # fmt: skip
        if peer is None or listener is None:
            proc.failed = f"Failed to connect to '{address}:{port}': Connection refused"
            return {}
        try:
            mig = world.model.migrate(
                self.node.name,
                peer.name,
                settings=self._settings(),
                downtime_limit_ms=proc.parameters.get("downtime-limit", 300),
            )
        except (SimError, ValueError) as exc:
            raise QmpError("GenericError", str(exc)) from None
        proc.sending = mig
        listener.receiving = mig
        return {}
