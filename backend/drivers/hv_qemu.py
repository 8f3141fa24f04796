"""The QEMU driver: the guest as a daemonized QEMU on a hypervisor host, spoken to over QMP.

The guest's command line is :func:`backend.drivers.qemu_argv.qemu_guest_argv` with
lab.toml's ``[guest.qemu]``, the guest's memory and vCPUs, and the shared disk with QEMU
as its own iSCSI initiator (``-drive file=iscsi://PORTAL/IQN/LUN``), so both hosts open
the same LUN and a migration moves only the guest's state, as in the study. QEMU runs
with ``-daemonize``; its files on each host are ``{run_dir}/{guest}.{host}.qmp`` (QMP
socket), ``.pid`` and ``.log`` (serial console), named after the host so two "hosts"
sharing one file system (tests, the sandbox) never collide.

Waits (between polls, for a QEMU to go) go through ``sleep`` and the times it measures
through ``clock``, both given to the constructor: ``asyncio.sleep`` and ``time.monotonic``
on a real lab, the simulated lab's own in a simulated run (its runtime's ``sleep`` and
``now``), so a run there is the same at any ``--speed``.

QMP goes over :meth:`HostRunner.open_unix_stream` (on an SSH host, a stream over the
kept connection to the remote socket). A QMP socket serves one client at a time, so
while a migration holds the source's and destination's sessions, :meth:`domains` and
:meth:`cancel` use those sessions instead of connecting again.

Names: a QEMU waiting for an incoming migration is reported as ``GUEST--incoming`` and
one that has migrated away (``postmigrate``) as ``GUEST--migratedaway``, the names xl
gives the same moments, so a poller never counts either as a second running guest.

Migration (pre-copy over TCP): the destination starts with the same command line plus
``-incoming tcp:ADDR:PORT`` (``guest.qemu.migration_port``; the source connects to the
destination's address in lab.toml, ``local`` meaning 127.0.0.1), the source gets
``max-bandwidth`` and ``downtime-limit``, then ``migrate``; ``query-migrate`` is polled
into ``migration.progress`` events and the last answer's ``total-time`` and
``downtime`` (QEMU's own figures) go into ``migration.finished``. After success the
source QEMU is told to quit; after a failure or a cancel the destination QEMU is stopped
and the guest runs on at the source.

Convergence policy (``hypervisor.convergence``, acting once ``dirty-sync-count`` exceeds
``hypervisor.convergence_after_syncs``, i.e. after that many passes over memory):

* ``auto-converge``: QEMU 7.2 refuses ``migrate-set-capabilities`` while a migration runs
  ("There's a migration process in progress", checked here), but takes
  ``migrate-set-parameters``. So auto-converge is switched on before ``migrate`` with the
  vCPU throttle held at 1 %, the least QEMU accepts (``cpu-throttle-initial``,
  ``cpu-throttle-increment`` and ``max-cpu-throttle`` all 1), and released to QEMU's
  defaults (20, 10, 99) once the policy acts; QEMU then raises the throttle by 10 points
  each time the guest dirties memory faster than half the transfer rate, twice running.
* ``raise-downtime``: double ``downtime-limit`` each time a poll finds a further pass
  (passes shorter than the poll interval are counted together).
* ``none``: nothing (a note says once that the migration is not converging).

What the policy did is published as ``note`` events; the throttle QEMU applies shows in
``migration.progress`` as the extra field ``cpu_throttle_percentage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from backend.aio import wait_for
from backend.config import LabConfig
from backend.drivers.base import (
    ALIVE,
    DomainInfo,
    DomainRunState,
    DriverError,
    HostCommand,
    HostInfo,
    MigrationOutcome,
    OperationResult,
    Planner,
    Publish,
    Refused,
)
from backend.drivers.hypervisor_base import HypervisorBase
from backend.drivers.parse_xl import INCOMING_SUFFIX, MIGRATEDAWAY_SUFFIX
from backend.drivers.qemu_argv import BootFiles, qemu_guest_argv
from backend.drivers.qmp import (
    MigrationStatus,
    QmpClient,
    QmpConnectionError,
    QmpError,
    QmpProtocolError,
    QmpTimeoutError,
)
from backend.events import MigrationFinished, MigrationProgress
from backend.transport.base import CommandFailed, HostRunner, TransportError

__all__ = ["ConvergencePolicy", "QemuDriver", "QmpRequest", "RunFiles", "run_state"]

QmpRequest = tuple[str, dict[str, Any] | None]
"""A QMP command and its arguments."""
Sleep = Callable[[float], Awaitable[None]]

QEMU_DEFAULT_DOWNTIME_MS = 300
MAX_DOWNTIME_LIMIT_MS = 2_000_000  # QEMU's limit: 2000 s
THROTTLE_HELD = {"cpu-throttle-initial": 1, "cpu-throttle-increment": 1, "max-cpu-throttle": 1}
THROTTLE_RELEASED = {
    "cpu-throttle-initial": 20,
    "cpu-throttle-increment": 10,
    "max-cpu-throttle": 99,
}  # QEMU's defaults

# Prints the pid of the QEMU this driver started for one host, or nothing: $1 is its
# pidfile (or a pid), $2 its "-qmp" argument, which must be in the process's command
# line (a reused pid, or a zombie whose parent never reaps it, has another or none).
PID_SCRIPT = r"""
pid=$1
case $pid in /*) pid=$(cat -- "$pid" 2>/dev/null) || exit 0 ;; esac
case $pid in ''|*[!0-9]*) exit 0 ;; esac
kill -0 "$pid" 2>/dev/null || exit 0
tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$2" || exit 0
echo "$pid"
"""

_QMP_CONNECT_TIMEOUT_S = 10.0
# What asking a host can raise when the host or its SSH is in trouble.
_HOST_TROUBLE = (
    CommandFailed,
    DriverError,
    TransportError,
    QmpError,
    QmpTimeoutError,
    QmpConnectionError,
)
_START_TIMEOUT_S = 60.0
_CONSOLE_TAIL = 6
"""Lines of a guest's console quoted when its QEMU ended mid-migration."""
_QEMU_VERSION = re.compile(r"QEMU emulator version (\S+)")
_MEMINFO = re.compile(r"^(MemTotal|MemAvailable|MemFree):\s+(\d+) kB$", re.MULTILINE)


def run_state(status: str) -> DomainRunState:
    """QEMU's run state (``query-status``) as a driver-neutral state."""
    if status == "running":
        return "running"
    if status in (
        "paused", "prelaunch", "inmigrate", "postmigrate", "finish-migrate",
        "suspended", "save-vm", "restore-vm", "debug", "colo",
    ):  # fmt: skip
        return "paused"
    if status == "shutdown":
        return "shutdown"
    if status in ("guest-panicked", "internal-error", "io-error", "watchdog"):
        return "crashed"
    return "other"


def progress_event(
    domain: str, source: str, dest: str, status: MigrationStatus
) -> MigrationProgress:
    """One ``query-migrate`` answer as a progress event (also used by ``miglab import``)."""
    ram = status.ram
    # status and cpu_throttle_percentage are extra fields (events allow them).
    return MigrationProgress.model_validate(
        {
            "domain": domain,
            "source": source,
            "dest": dest,
            "iteration": ram.dirty_sync_count if ram else None,
            "transferred_bytes": ram.transferred if ram else None,
            "remaining_bytes": ram.remaining if ram else None,
            "total_bytes": ram.total if ram else None,
            "mbps": ram.mbps if ram else None,
            "expected_downtime_ms": status.expected_downtime_ms,
            "status": status.status,
            "cpu_throttle_percentage": status.cpu_throttle_percentage,
        }
    )


@dataclass(frozen=True)
class RunFiles:
    """The files of the guest's QEMU on one host (paths on that host)."""

    qmp: str
    pid: str
    log: str


class ConvergencePolicy:
    """What to do when pre-copy does not converge (see the module's docstring)."""

    def __init__(
        self,
        mode: Literal["none", "auto-converge", "raise-downtime"],
        after_syncs: int,
        downtime_limit_ms: int,
    ) -> None:
        self.mode = mode
        self.after_syncs = after_syncs
        self.downtime_limit_ms = downtime_limit_ms
        self._acted_at = 0  # the dirty-sync-count the policy last acted on

    def capabilities(self) -> dict[str, bool]:
        """Set before ``migrate``: QEMU refuses capability changes while one runs."""
        return {"auto-converge": self.mode == "auto-converge"}

    def parameters(self) -> dict[str, Any]:
        """Migration parameters before ``migrate``."""
        held = THROTTLE_HELD if self.mode == "auto-converge" else {}
        return {"downtime-limit": self.downtime_limit_ms, **held}

    def step(self, status: MigrationStatus) -> tuple[list[QmpRequest], str | None]:
        """Requests to send, and a note, for one ``query-migrate`` answer."""
        syncs = status.ram.dirty_sync_count if status.ram is not None else None
        if status.status != "active" or syncs is None or syncs <= self.after_syncs:
            return [], None
        if syncs <= self._acted_at:
            return [], None
        first = self._acted_at == 0
        self._acted_at = syncs
        passes = f"{syncs - 1} passes over memory"
        if self.mode == "auto-converge":
            if not first:
                return [], None
            return [("migrate-set-parameters", dict(THROTTLE_RELEASED))], (
                f"auto-converge: not converged after {passes}; vCPU throttle released "
                "from its 1 % hold to QEMU's defaults (20 % at first, then 10 % more each "
                "time the guest dirties memory faster than half the transfer rate)"
            )
        if self.mode == "raise-downtime":
            old = self.downtime_limit_ms
            self.downtime_limit_ms = min(old * 2, MAX_DOWNTIME_LIMIT_MS)
            if self.downtime_limit_ms == old:
                return [], None
            request: QmpRequest = (
                "migrate-set-parameters",
                {"downtime-limit": self.downtime_limit_ms},
            )
            return [request], (
                f"raise-downtime: not converged after {passes}; downtime-limit "
                f"{old} -> {self.downtime_limit_ms} ms"
            )
        if first:
            return [], (
                f"not converged after {passes}; convergence policy is none: the migration "
                "runs until it converges or is cancelled"
            )
        return [], None


# How many more answers to ask for when QEMU says "completed" without its figures.
SETTLE_POLLS = 50


async def settled(
    status: MigrationStatus,
    query: Callable[[], Awaitable[MigrationStatus]],
    pause_s: float,
    polls: int = SETTLE_POLLS,
    sleep: Sleep = asyncio.sleep,
) -> MigrationStatus:
    """The final answer with QEMU's own figures in it.

    QEMU marks a migration completed (migration_completion) a moment before it works out
    its total time and downtime (migration_iteration_finish -> migration_calculate_complete),
    and an answer in between says 0 ms for both: seen on the sandbox, total 0.00 s for a
    12.8 s migration. Ask again until total-time is set; if it never is, the figures are
    unknown (None), never 0.
    """
    if status.status != "completed" or status.total_time_ms:
        return status
    for _ in range(polls):
        await sleep(pause_s)
        again = await query()
        if again.status != "completed" or again.total_time_ms:
            return again
    return status.model_copy(update={"total_time_ms": None, "downtime_ms": None})


class QemuDriver(HypervisorBase):
    """QEMU (``[guest.qemu]``) on both hypervisor hosts."""

    def __init__(
        self,
        lab: LabConfig,
        runners: Mapping[str, HostRunner],
        publish: Publish,
        *,
        poll_interval_s: float = 0.15,
        powerdown_timeout_s: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(lab, runners, publish)
        if lab.guest.qemu is None:
            raise DriverError('[guest.qemu] is required with driver = "qemu"')
        if lab.storage.chap is not None:
            # A password on QEMU's command line would show in `ps` and in the session
            # log; QEMU's secret objects need a file on the host, which miglab does not
            # place yet.
            raise DriverError("the qemu driver cannot log in to a CHAP-protected target yet")
        self.qemu = lab.guest.qemu
        self.run_dir = lab.hypervisor.run_dir.rstrip("/") or "/"
        self.poll_interval_s = poll_interval_s
        self.powerdown_timeout_s = powerdown_timeout_s
        self.sleep = sleep
        self.clock = clock
        self._sessions: dict[str, QmpClient] = {}  # host -> the session a migration holds

    # -- command lines ---------------------------------------------------------------------

    def files(self, host: str) -> RunFiles:
        base = f"{self.run_dir}/{self.guest}.{host}"
        return RunFiles(qmp=f"{base}.qmp", pid=f"{base}.pid", log=f"{base}.log")

    @property
    def drive(self) -> str:
        storage = self.lab.storage
        return f"iscsi://{storage.portal}/{storage.iqn}/{storage.lun}"

    def guest_argv(self, host: str, *, incoming: str | None = None) -> list[str]:
        """The QEMU command line for ``host`` (a migration destination with ``incoming``)."""
        files = self.files(host)
        # "/" stands in for no initrd: its -initrd pair is dropped below.
        image = BootFiles(kernel=Path(self.qemu.kernel), initrd=Path(self.qemu.initrd or "/"))
        try:
            argv = qemu_guest_argv(
                image,
                memory_mb=self.lab.guest.memory_mb,
                vcpus=self.lab.guest.vcpus,
                qmp_socket=Path(files.qmp),
                serial_log=Path(files.log),
                pidfile=Path(files.pid),
                drive=self.drive,
                netdev=self.qemu.tap,
                mac=self.qemu.mac,
                incoming=incoming,
                daemonize=True,
                append_extra=self.qemu.append.split(),
                name=self.guest,
                qemu_binary=self.qemu.binary,
            )
        except ValueError as exc:  # e.g. a comma in a path: QEMU's option syntax splits there
            raise DriverError(f"cannot build the QEMU command line: {exc}") from None
        # qemu_guest_argv is TCG only and always has an initrd; lab.toml may differ.
        argv[argv.index("-accel") + 1] = self.qemu.accel
        if self.qemu.initrd is None:
            at = argv.index("-initrd")
            del argv[at : at + 2]
        return argv

    def _qmp_arg(self, host: str) -> str:
        argv = self.guest_argv(host)
        return argv[argv.index("-qmp") + 1]

    def _listen_uri(self, dest: str) -> str:
        """Where the destination listens: on loopback when it is reached on loopback,
        else on every address (lab.toml's may be a name, or reach the host through NAT)."""
        address = self.peer_address(dest)
        if self.is_loopback(address):
            host = address
        else:
            host = "::" if ":" in address else "0"
        if ":" in host:
            host = f"[{host}]"
        return f"tcp:{host}:{self.qemu.migration_port}"

    def _connect_uri(self, dest: str) -> str:
        address = self.peer_address(dest)
        host = f"[{address}]" if ":" in address else address
        return f"tcp:{host}:{self.qemu.migration_port}"

    def _policy(self) -> ConvergencePolicy:
        hv = self.lab.hypervisor
        downtime = hv.downtime_limit_ms or QEMU_DEFAULT_DOWNTIME_MS
        return ConvergencePolicy(hv.convergence, hv.convergence_after_syncs, downtime)

    def _setup_requests(self, dest: str, policy: ConvergencePolicy) -> list[QmpRequest]:
        """Everything sent to the source QEMU up to and including ``migrate``."""
        capabilities = [
            {"capability": name, "state": state} for name, state in policy.capabilities().items()
        ]
        bandwidth = self.lab.migrate_bandwidth_mbit * 1_000_000 // 8  # bytes/s
        return [
            ("migrate-set-capabilities", {"capabilities": capabilities}),
            ("migrate-set-parameters", {"max-bandwidth": bandwidth, **policy.parameters()}),
            ("migrate", {"uri": self._connect_uri(dest)}),
        ]

    def _qmp_command(self, host: str, request: QmpRequest) -> HostCommand:
        """A QMP request as a pseudo-command for plans: ``qmp SOCKET COMMAND [JSON]``."""
        command, arguments = request
        extra = (json.dumps(arguments, sort_keys=True),) if arguments else ()
        return HostCommand(host, ("qmp", self.files(host).qmp, command, *extra))

    # -- processes ---------------------------------------------------------------------------

    async def _pid(self, host: str, pid: int | None = None) -> int | None:
        """The pid of our QEMU on ``host`` (from its pidfile, or check ``pid``), if it runs."""
        what = str(pid) if pid is not None else self.files(host).pid
        argv = ["sh", "-c", PID_SCRIPT, "miglab-qemu-pid", what, self._qmp_arg(host)]
        result = (await self.runner(host).run(argv, timeout=15)).check()
        text = result.stdout.strip()
        return int(text) if text.isdigit() else None

    async def _wait_gone(self, host: str, pid: int, timeout: float) -> bool:
        deadline = self.clock() + timeout
        while await self._pid(host, pid) is not None:
            if self.clock() > deadline:
                return False
            await self.sleep(0.1)
        return True

    async def _stop(self, host: str, pid: int, planner: Planner | None = None) -> None:
        """``quit`` over QMP, and SIGKILL if QEMU is still there 5 s later."""
        try:
            async with self._qmp(host) as qmp:
                await qmp.quit(timeout=5)
        except (DriverError, QmpError, QmpTimeoutError, QmpConnectionError):
            pass  # a hung or half-started QEMU: the kill below
        if not await self._wait_gone(host, pid, 5):
            argv = ["kill", "-KILL", str(pid)]
            if planner is not None:
                await planner.mutate(self.runner(host), argv)
            else:
                await self.runner(host).run(argv)
            await self._wait_gone(host, pid, 5)

    @contextlib.asynccontextmanager
    async def _qmp(self, host: str) -> AsyncIterator[QmpClient]:
        """The migration's session with ``host``'s QEMU, else a new one for the block."""
        shared = self._sessions.get(host)
        if shared is not None and not shared.closed:
            yield shared
            return
        client = await self._connect(host)
        try:
            yield client
        finally:
            await client.close()

    async def _connect(self, host: str) -> QmpClient:
        path = self.files(host).qmp
        try:
            reader, writer = await wait_for(
                self.runner(host).open_unix_stream(path), _QMP_CONNECT_TIMEOUT_S
            )
            return await QmpClient.connect(reader, writer, timeout=_QMP_CONNECT_TIMEOUT_S)
        except (OSError, TransportError, TimeoutError, QmpConnectionError, QmpProtocolError) as exc:
            why = str(exc) or type(exc).__name__
            raise DriverError(f"{host}: cannot talk to QEMU at {path}: {why}") from exc

    # -- looking -----------------------------------------------------------------------------

    async def domains(self, host: str) -> list[DomainInfo]:
        """The guest's QEMU on ``host``, if this driver started one that still runs."""
        pid = await self._pid(host)
        domains: list[DomainInfo] = []
        if pid is not None:
            name = self.guest
            try:
                async with self._qmp(host) as qmp:
                    status = (await qmp.query_status()).status
            except (DriverError, QmpError, QmpTimeoutError, QmpConnectionError):
                status = "unknown"  # alive but not answering: "other"
            if status == "inmigrate":
                name = self.guest + INCOMING_SUFFIX
            elif status == "postmigrate":
                name = self.guest + MIGRATEDAWAY_SUFFIX
            state = run_state(status)
            domains.append(DomainInfo(name, state, self.lab.guest.memory_mb, self.lab.guest.vcpus))
        self.report(host, domains)
        return domains

    async def info(self, host: str) -> HostInfo:
        runner = self.runner(host)
        meminfo, version = await asyncio.gather(
            runner.run(["cat", "/proc/meminfo"], timeout=15),
            runner.run([self.qemu.binary, "--version"], timeout=15),
        )
        memory = {key: int(kb) // 1024 for key, kb in _MEMINFO.findall(meminfo.check().stdout)}
        found = _QEMU_VERSION.search(version.check().stdout)
        return HostInfo(
            host,
            memory.get("MemAvailable", memory.get("MemFree")),
            memory.get("MemTotal"),
            f"QEMU {found.group(1)}" if found else None,
        )

    # -- changing ----------------------------------------------------------------------------

    async def _ensure_run_dir(self, host: str, planner: Planner) -> None:
        result = await self.runner(host).run(["test", "-d", self.run_dir], timeout=15)
        if not result.ok:
            await planner.mutate(self.runner(host), ["mkdir", "-p", self.run_dir])

    async def create(self, host: str, *, dry_run: bool = False) -> OperationResult:
        if await self.check_boot(host):
            return OperationResult(False, [], dry_run, f"{self.guest} already runs on {host}")
        planner = Planner(dry_run)
        await self._ensure_run_dir(host, planner)
        await planner.mutate(self.runner(host), self.guest_argv(host), timeout=_START_TIMEOUT_S)
        if not dry_run:
            await self.domains(host)
        log = self.files(host).log
        return planner.result(f"boot {self.guest} on {host}; serial console in {log}")

    async def shutdown(self, host: str, *, dry_run: bool = False) -> OperationResult:
        """``system_powerdown`` (ACPI), and ``quit`` after ``powerdown_timeout_s`` if the
        guest ignores it (a guest without acpid does)."""
        pid = await self._pid(host)
        if pid is None:
            return OperationResult(False, [], dry_run, f"{self.guest} is not on {host}")
        planner = Planner(dry_run)
        planner.commands.append(self._qmp_command(host, ("system_powerdown", None)))
        detail = f"power off {self.guest} on {host} (quit after {self.powerdown_timeout_s:g} s)"
        if dry_run:
            return planner.result(detail)
        try:
            async with self._qmp(host) as qmp:
                await qmp.execute("system_powerdown")
            gone = await self._wait_gone(host, pid, self.powerdown_timeout_s)
        except (DriverError, QmpError, QmpTimeoutError, QmpConnectionError) as exc:
            self.note(f"{host}: system_powerdown failed ({exc}); stopping QEMU", "warning")
            gone = False
        if not gone:
            self.note(
                f"{self.guest} on {host} ignored the ACPI power button for "
                f"{self.powerdown_timeout_s:g} s; stopping QEMU",
                "warning",
            )
            planner.commands.append(self._qmp_command(host, ("quit", None)))
            await self._stop(host, pid, planner)
        await self.domains(host)
        return planner.result(detail)

    async def destroy(self, host: str, *, dry_run: bool = False) -> OperationResult:
        """``quit`` the guest's QEMU (SIGKILL if it does not go)."""
        pid = await self._pid(host)
        if pid is None:
            return OperationResult(False, [], dry_run, f"{self.guest} is not on {host}")
        planner = Planner(dry_run)
        planner.commands.append(self._qmp_command(host, ("quit", None)))
        if not dry_run:
            await self._stop(host, pid, planner)
            await self.domains(host)
        return planner.result(f"stop the QEMU of {self.guest} on {host} (pid {pid})")

    # -- migrating ---------------------------------------------------------------------------

    def _check_ends(self, source: str, dest: str) -> None:
        if source == dest:
            raise Refused(f"the guest cannot migrate from {source} to itself")
        self.runner(source)
        self.runner(dest)

    async def migrate_plan(self, source: str, dest: str) -> list[HostCommand]:
        self._check_ends(source, dest)
        planner = Planner(dry_run=True)
        await self._ensure_run_dir(dest, planner)
        incoming = self.guest_argv(dest, incoming=self._listen_uri(dest))
        await planner.mutate(self.runner(dest), incoming)
        commands = list(planner.commands)
        setup = self._setup_requests(dest, self._policy())
        commands += [self._qmp_command(source, request) for request in setup]
        commands.append(self._qmp_command(source, ("query-migrate", None)))
        commands.append(self._qmp_command(source, ("quit", None)))
        return commands

    async def migrate(self, source: str, dest: str) -> MigrationOutcome:
        self._check_ends(source, dest)
        src_pid = await self._pid(source)
        here = await self.domains(source)
        if src_pid is None or not here or here[0].name != self.guest:
            raise Refused(f"{self.guest} is not running on {source}")
        if here[0].state not in ALIVE:
            raise Refused(f"{self.guest} on {source} is {here[0].state}, not running")
        if await self._pid(dest) is not None:
            raise Refused(f"{dest} already runs a QEMU of {self.guest}; destroy it first")

        started = self.clock()
        dst_pid: int | None = None
        try:
            planner = Planner(dry_run=False)
            await self._ensure_run_dir(dest, planner)
            argv = self.guest_argv(dest, incoming=self._listen_uri(dest))
            (await self.runner(dest).run(argv, timeout=_START_TIMEOUT_S)).check()
            dst_pid = await self._pid(dest)
            self._sessions[source] = await self._connect(source)
            self._sessions[dest] = await self._connect(dest)
            await self.domains(dest)
            status = await self._run_migration(source, dest)
        except asyncio.CancelledError:
            # The caller gave up: leave the guest where it was, and nothing behind.
            where, _ = await asyncio.shield(self._abandon(source, dest, dst_pid))
            error = "stopped: the caller gave up waiting"
            self._finish(source, dest, None, started, error, guest_host=where)
            raise
        except _HOST_TROUBLE as exc:
            ended = None
            if isinstance(exc, QmpConnectionError):  # asked before the cleanup stops one
                ended = await self._ended_qemus({source: src_pid, dest: dst_pid})
            where, left = await self._abandon(source, dest, dst_pid)
            error = "; ".join(str(part) for part in (exc, ended, left) if part is not None)
            return self._finish(source, dest, None, started, error, guest_host=where)
        finally:
            for host in (source, dest):
                client = self._sessions.pop(host, None)
                if client is not None:
                    await client.close()

        if status.status != "completed":
            where, left = await self._abandon(source, dest, dst_pid)
            error = status.error_desc or f"migration {status.status}"
            error = error if left is None else f"{error}; {left}"
            return self._finish(source, dest, status, started, error, guest_host=where)
        return await self._complete(source, dest, src_pid, status, started)

    async def _run_migration(self, source: str, dest: str) -> MigrationStatus:
        """Set up and start the migration on the source, follow it to its end."""
        qmp = self._sessions[source]
        policy = self._policy()
        for command, arguments in self._setup_requests(dest, policy):
            await qmp.execute(command, arguments)
        while True:
            status = await qmp.query_migrate()
            if status.status not in ("none", "completed", "failed", "cancelled"):
                self._progress(source, dest, status)
            if status.finished:
                return await settled(
                    status, qmp.query_migrate, self.poll_interval_s, sleep=self.sleep
                )
            follow_up, note = policy.step(status)
            for command, arguments in follow_up:
                await qmp.execute(command, arguments)
            if note is not None:
                self.note(note)
            await self.sleep(self.poll_interval_s)

    async def _ended_qemus(self, pids: Mapping[str, int | None]) -> str | None:
        """After a QMP connection closed mid-migration: which QEMU is gone, with the last
        lines of its guest's console (a guest that panics ends its QEMU: ``-no-reboot``,
        ``panic=-1``). None if each still runs, or if no host can be asked."""
        said: list[str] = []
        for host, pid in pids.items():
            with contextlib.suppress(*_HOST_TROUBLE):
                if pid is None or await self._pid(host, pid) is not None:
                    continue
                argv = ["tail", "-n", str(_CONSOLE_TAIL), self.files(host).log]
                lines = (await self.runner(host).run(argv, timeout=15)).stdout.splitlines()
                shown = " | ".join(line.strip() for line in lines if line.strip())
                console = f"; its console ended: {shown}" if shown else "; its console is empty"
                said.append(f"the QEMU of {self.guest} on {host} (pid {pid}) is gone{console}")
        return "; ".join(said) or None

    def _progress(self, source: str, dest: str, status: MigrationStatus) -> None:
        self._publish(progress_event(self.guest, source, dest, status))

    async def _complete(
        self, source: str, dest: str, src_pid: int, status: MigrationStatus, started: float
    ) -> MigrationOutcome:
        """After QEMU completed: the guest must run on ``dest``; the source QEMU goes.

        A host that cannot be asked now (its SSH dropped) still ends the migration with
        its event, saying what is known, and then a DriverError: never a raw
        CommandFailed, never a migration without its ``migration.finished``.
        """
        try:
            running = await self._wait_running(dest)
        except _HOST_TROUBLE as exc:
            error = f"QEMU completed the migration, but {dest} cannot be checked: {exc}"
            # Not stopped: if the destination's QEMU is gone, the source's copy is all
            # that is left of the guest (`cont` resumes it); if it runs, destroy this one.
            self.note(
                f"{self.guest} stays paused on {source} ({self.guest}{MIGRATEDAWAY_SUFFIX}) "
                f"until {dest} can be checked",
                "error",
            )
            self._finish(source, dest, status, started, error, guest_host=None)
            raise DriverError(error) from exc
        guest_host = dest if running else None
        try:
            await self._stop(source, src_pid)
            await self.domains(source)
        except _HOST_TROUBLE as exc:
            error = (
                f"the migration completed, but the source's copy on {source} could not be "
                f"stopped: {exc}"
            )
            self._finish(source, dest, status, started, error, guest_host=guest_host)
            raise DriverError(error) from exc
        return self._finish(source, dest, status, started, None, guest_host=guest_host)

    async def _wait_running(self, dest: str) -> bool:
        """Whether the guest runs on ``dest`` (given a few seconds to resume)."""
        deadline = self.clock() + 10
        while True:
            dest_now = await self.domains(dest)
            if dest_now and dest_now[0].state == "running":
                return True
            if self.clock() > deadline:
                self.note(f"{self.guest} completed its migration but is not running on {dest}")
                return False
            await self.sleep(0.1)

    async def _abandon(
        self, source: str, dest: str, dst_pid: int | None
    ) -> tuple[str | None, str | None]:
        """After a failure or cancel: stop any migration and the destination QEMU.

        Returns where the guest is (None: unclear) and what could not be cleaned up (a
        host that cannot be asked is said so, never raised: the migration's end must
        still be recorded).
        """
        with contextlib.suppress(*_HOST_TROUBLE):
            async with self._qmp(source) as qmp:
                if (await qmp.query_migrate()).active:
                    await qmp.migrate_cancel()
        left: str | None = None
        try:
            pid = dst_pid if dst_pid is not None else await self._pid(dest)
            if pid is not None:
                await self._stop(dest, pid)
            await self.domains(dest)
        except _HOST_TROUBLE as exc:
            left = f"the incoming QEMU on {dest} may still run: {exc}"
        try:
            now = await self.domains(source)
        except _HOST_TROUBLE as exc:
            self.note(f"after the failed migration {source} cannot be asked: {exc}", "error")
            return None, left
        if not now or now[0].state != "running":
            state = now[0].state if now else "gone"
            self.note(f"after the failed migration {self.guest} on {source} is {state}", "error")
        return (source if now else None), left

    def _finish(
        self,
        source: str,
        dest: str,
        status: MigrationStatus | None,
        started: float,
        error: str | None,
        *,
        guest_host: str | None,
    ) -> MigrationOutcome:
        """Publish ``migration.finished``; ``guest_host``: where the guest is now (None:
        unclear)."""
        wall_ms = round((self.clock() - started) * 1000, 3)
        ram = status.ram if status is not None else None
        outcome = MigrationOutcome(
            ok=error is None,
            total_time_ms=status.total_time_ms if status is not None else None,
            downtime_ms=status.downtime_ms if status is not None else None,
            transferred_bytes=ram.transferred if ram is not None else None,
            iterations=ram.dirty_sync_count if ram is not None else None,
            error=error,
        )
        if error is not None:
            if guest_host is None:
                where = "where it runs is unclear"
            else:
                where = f"it {'stays' if guest_host == source else 'runs'} on {guest_host}"
            self.note(f"migration of {self.guest} failed: {error}; {where}", "error")
        # guest_host, wall_time_ms and setup_time_ms are extra fields (events allow them).
        self._publish(
            MigrationFinished.model_validate(
                {
                    "domain": self.guest,
                    "source": source,
                    "dest": dest,
                    "ok": outcome.ok,
                    "total_time_ms": outcome.total_time_ms,
                    "downtime_ms": outcome.downtime_ms,
                    "transferred_bytes": outcome.transferred_bytes,
                    "iterations": outcome.iterations,
                    "error": error,
                    "guest_host": guest_host,
                    "wall_time_ms": wall_ms,
                    "setup_time_ms": status.setup_time_ms if status is not None else None,
                }
            )
        )
        return outcome

    def cancel_plan(self, source: str) -> list[HostCommand]:
        """QEMU's migration is cancelled over QMP, not by stopping a command."""
        return [HostCommand(source, ("qmp", self.files(source).qmp, "migrate_cancel"))]

    async def cancel(self, source: str) -> None:
        """``migrate_cancel`` on the source; :meth:`migrate` then stops the destination."""
        try:
            async with self._qmp(source) as qmp:
                status = await qmp.query_migrate()
                if not status.active:
                    self.note(f"no migration runs from {source} ({status.status})", "warning")
                    return
                await qmp.migrate_cancel()
        except (QmpError, QmpTimeoutError, QmpConnectionError) as exc:
            raise DriverError(f"{source}: migrate_cancel failed: {exc}") from exc
        self.note(f"migration of {self.guest} from {source} cancelled; it stays on {source}")
