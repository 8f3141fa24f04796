"""QEMU on the simulated hypervisor hosts: ``qemu-system-x86_64``, its processes, ``kill``.

QEMU 7.2 (Debian 12's, what the QEMU sandbox runs) as miglab's qemu driver
(``backend/drivers/hv_qemu.py``) starts it: ``-daemonize`` with ``-pidfile`` and a QMP
socket (``-qmp unix:PATH,server=on,wait=off``), the guest's disk opened by QEMU's own
iSCSI initiator (``-drive file=iscsi://PORTAL/IQN/LUN``), and for a migration's
destination ``-incoming tcp:ADDR:PORT``. Each start is a :class:`QemuProcess` on its host
(``node.state["qemu"]``); the guest it runs is the model's one guest. What QMP says and
does is :mod:`backend.sim.qmp_server`.

A process's part follows the model (:func:`refresh`): the guest's QEMU goes when the
guest powers off (QEMU exits at a guest's power-off), becomes ``postmigrate`` once the
guest runs at a migration's destination; the destination's ``inmigrate`` QEMU becomes the
guest's, or exits when the incoming migration fails (as ``load of migration failed``
makes it).

Messages are QEMU 7.2's, run here (``qemu-system-x86_64 --version``, a missing kernel,
an iSCSI drive nobody answers, a QMP socket in a missing directory).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from backend.sim.commands import storage
from backend.sim.commands.base import Invocation
from backend.sim.model import DOM0_MIB, TICK, Model, SimError
from backend.sim.precopy import PreCopy, Stage

if TYPE_CHECKING:
    from backend.sim.world import Node, World

BINARY = "qemu-system-x86_64"
VERSION = (
    "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"
    "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"
)
FIRST_PID = 4200
_FLAGS = frozenset(
    {"-nodefaults", "-no-user-config", "-no-reboot", "-daemonize", "-S", "-snapshot",
     "-nographic", "-no-shutdown"}
)  # fmt: skip
"""Options without a value (every other option takes one)."""

Role = Literal["guest", "incoming", "migrated"]


@dataclass
class QemuProcess:
    """One running QEMU on one simulated host."""

    pid: int
    host: str
    argv: list[str]
    qmp_path: str
    pidfile: str | None
    role: Role
    port: int | None = None
    """``-incoming tcp:ADDR:PORT``: where it listens for the migration stream."""
    capabilities: dict[str, bool] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)
    sending: PreCopy | None = None
    """The migration it started (``migrate``), as the source."""
    receiving: PreCopy | None = None
    """The migration it receives, as the destination."""
    failed: str | None = None
    """Why its last ``migrate`` could not even connect (``error-desc``)."""
    cancelled: bool = False


def processes(node: Node) -> dict[int, QemuProcess]:
    found: dict[int, QemuProcess] = node.state.setdefault("qemu", {})
    return found


def _new_pid(world: World) -> int:
    pid = FIRST_PID + world.temp_counter
    world.temp_counter += 1
    return pid


def refresh(world: World) -> None:
    """Bring each QEMU's part in line with the model (see the module's docstring)."""
    model = world.model
    for node in world.nodes.values():
        for proc in list(processes(node).values()):
            incoming, outgoing = proc.receiving, proc.sending
            if proc.role == "incoming" and incoming is not None:
                if incoming.stage is Stage.ABORTED:
                    end(world, node, proc)
                elif incoming.resumed_at is not None:
                    proc.role = "guest"
            elif proc.role == "guest":
                if model.guest.status == "off":
                    end(world, node, proc)
                elif outgoing is not None and outgoing.resumed_at is not None:
                    if outgoing.stage is not Stage.ABORTED:
                        proc.role = "migrated"


def end(world: World, node: Node, proc: QemuProcess) -> None:
    """The process exits: its pidfile and socket go with it."""
    processes(node).pop(proc.pid, None)
    for path in (proc.pidfile, proc.qmp_path):
        if path is not None:
            node.remove(path)


def stop(world: World, node: Node, proc: QemuProcess) -> None:
    """``quit`` or SIGKILL: the guest goes with the QEMU that runs it."""
    if proc.role == "guest" and world.model.guest.host == node.name:
        if world.model.guest.status != "off":
            world.model.destroy(node.name)
    elif proc.role == "incoming" and proc.receiving is not None:
        world.model.abort_migration()
    end(world, node, proc)


def run_status(world: World, proc: QemuProcess) -> str:
    """``query-status``'s ``status``."""
    if proc.role == "incoming":
        return "inmigrate"
    if proc.role == "migrated":
        return "postmigrate"
    mig = proc.sending
    if mig is not None and mig.guest_stopped:
        return "finish-migrate"
    return "running"


def listening(world: World, node: Node, path: str) -> QemuProcess | None:
    """The QEMU whose QMP socket is ``path`` on ``node``, if one runs."""
    refresh(world)
    return next((p for p in processes(node).values() if p.qmp_path == path), None)


# -- qemu-system-x86_64 --------------------------------------------------------------------


async def qemu(inv: Invocation) -> int:
    args = inv.argv[1:]
    if "--version" in args or "-version" in args:
        await inv.out(VERSION)
        return 0
    options: dict[str, str] = {}
    flags: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _FLAGS:
            flags.add(arg)
            i += 1
            continue
        if not arg.startswith("-") or i + 1 >= len(args):
            await inv.err(f"{inv.name}: {arg}: invalid option\n")
            return 1
        options.setdefault(arg, args[i + 1])
        i += 2
    refresh(inv.world)
    problem = _problem(inv, options)
    if problem is not None:
        await inv.err(problem)
        return 1
    qmp = _socket_path(options.get("-qmp", ""))
    incoming = options.get("-incoming")
    port = None
    if incoming is not None:
        port = _port(incoming)
        if port is None:
            await inv.err(f"{inv.name}: -incoming {incoming}: unknown migration protocol\n")
            return 1
        if any(p.port == port for p in processes(inv.node).values()):
            await inv.err(f"{inv.name}: Failed to find an available port: Address already in use\n")
            return 1
    else:
        try:
            inv.model.boot(inv.node.name)
        except SimError:
            host = inv.model.guest.host
            await inv.err(
                f"miglab sim: the simulated lab has one guest, and it already runs on {host}\n"
            )
            return 1
    pid = _new_pid(inv.world)
    pidfile = options.get("-pidfile")
    proc = QemuProcess(
        pid, inv.node.name, list(inv.argv), qmp or "", pidfile,
        "incoming" if incoming is not None else "guest", port,
    )  # fmt: skip
    processes(inv.node)[pid] = proc
    if pidfile is not None:
        inv.node.write(pidfile, f"{pid}\n")
    if qmp is not None:
        inv.node.write(qmp, "")  # the socket
    serial = options.get("-serial", "")
    if serial.startswith("file:"):
        inv.node.write(serial[len("file:") :], "")
    if "-daemonize" in flags:
        return 0
    while pid in processes(inv.node):  # in the foreground: until it exits
        await inv.runtime.until(inv.model.t + TICK)
        refresh(inv.world)
    return 0


def _problem(inv: Invocation, options: dict[str, str]) -> str | None:
    """What QEMU would say and exit 1 for, before it starts."""
    kernel = options.get("-kernel")
    if kernel is not None and not inv.node.is_file(kernel):
        return f"qemu: could not open kernel file '{kernel}': No such file or directory\n"
    spec = options.get("-qmp")
    if spec is not None:
        path = _socket_path(spec)
        if path is not None and not inv.node.is_dir(posixpath.dirname(path)):
            return (
                f"{inv.name}: -qmp {spec}: Failed to bind socket to {path}: "
                "No such file or directory\n"
            )
    drive = options.get("-drive")
    if drive is not None:
        why = _iscsi_problem(inv.world, drive)
        if why is not None:
            return f"{inv.name}: -drive {drive}: iSCSI: Failed to connect to LUN : {why}\n\n"
    return None


def _iscsi_problem(world: World, drive: str) -> str | None:
    """Why QEMU's initiator cannot open ``file=iscsi://PORTAL/IQN/LUN`` (None: it can)."""
    spec = next((p[5:] for p in drive.split(",") if p.startswith("file=")), "")
    if not spec.startswith("iscsi://"):
        return None  # a local file: the simulated hosts have whatever disk they are given
    portal, _, rest = spec[len("iscsi://") :].partition("/")
    iqn, _, lun = rest.rpartition("/")
    target = next((n for n in world.nodes.values() if n.role == "storage"), None)
    if target is None or world.portal is None or portal != world.portal:
        return (
            "iscsi_service failed with : iscsi_service_reconnect_if_loggedin. "
            "Can not reconnect right now."
        )
    for name, luns, _chap in storage.exported_targets(target):
        if name == iqn and any(str(n) == lun and disk for n, disk in luns):
            return None
    return "Failed to log in to target. Status: Target not found(515)"


def _socket_path(spec: str) -> str | None:
    """``unix:PATH,server=on,wait=off`` -> PATH."""
    if not spec.startswith("unix:"):
        return None
    return spec[len("unix:") :].split(",", 1)[0]


def _port(uri: str) -> int | None:
    """``tcp:ADDR:PORT`` -> PORT."""
    if not uri.startswith("tcp:"):
        return None
    port = uri.rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else None


# -- the driver's pid script and kill --------------------------------------------------------


async def pid_script(inv: Invocation, args: list[str]) -> int:
    """miglab-qemu-pid PIDFILE|PID QMPARG: the pid, if that QEMU runs with that -qmp."""
    what, qmp_arg = [*args, "", ""][:2]
    refresh(inv.world)
    text = what
    if what.startswith("/"):
        text = (inv.node.read(what) or "").strip()
    if not text.isdigit():
        return 0
    proc = processes(inv.node).get(int(text))
    if proc is not None and qmp_arg in proc.argv:
        await inv.out(f"{proc.pid}\n")
    return 0


async def kill(inv: Invocation) -> int:
    """procps ``kill [-SIGNAL] PID...``: only QEMU runs here to be killed."""
    pids = [a for a in inv.argv[1:] if not a.startswith("-")]
    if not pids:
        await inv.err("kill: not enough arguments\n")
        return 1
    refresh(inv.world)
    status = 0
    for text in pids:
        proc = processes(inv.node).get(int(text)) if text.isdigit() else None
        if proc is None:
            await inv.err(f"kill: ({text}): No such process\n")
            status = 1
            continue
        stop(inv.world, inv.node, proc)
    return status


def meminfo(model: Model, host: str) -> str:
    """``/proc/meminfo``'s first lines (``"%-16s%8lu kB"``): what ``info()`` reads."""
    total = model.params.host_memory_mib * 1024
    guest = model.params.memory_mib if model.guest.host == host else 0
    free = max(0, total - (DOM0_MIB + guest) * 1024)
    rows: list[tuple[str, Any]] = [("MemTotal", total), ("MemFree", free), ("MemAvailable", free)]
    return "".join(f"{key + ':':<16}{kb:>8} kB\n" for key, kb in rows)
