"""What differs between Xen's two toolstacks, for :class:`~backend.drivers.hv_xen.XenDriver`.

lab.toml's ``[hypervisor] toolstack`` picks one: ``xl`` (libxl, Xen >= 4.1; the
default) or ``xm`` (xend, Xen 3.x, as in the 2009 study). Both take the same argv for
``list``, ``info``, ``create CFG``, ``shutdown -w DOMAIN`` and ``destroy DOMAIN``; they
differ in what those print, in how a migration is started and reported, and in the
names a guest has during a migration. Each :class:`XenToolstack` holds just that.

``xm`` in short (:mod:`backend.drivers.parse_xm` has the formats): ``xm migrate --live
DOMAIN HOST`` asks the local xend to send the guest to xend's relocation server on
HOST (port 8002), prints nothing on success and reports no progress; the source copy is
``migrating-NAME`` meanwhile. Stopping ``xm`` does not stop xend's migration, so a
migration cannot be cancelled from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from backend.drivers import ParseError
from backend.drivers.base import DomainInfo, DomainRunState, HostInfo
from backend.drivers.parse_xl import (
    MigrateUpdate,
    ShutdownReason,
    XlMigrateParser,
    XlState,
    parse_xl_info,
    parse_xl_list,
)
from backend.drivers.parse_xm import (
    MIGRATING_PREFIX,
    XmMigrateParser,
    XmState,
    parse_xm_info,
    parse_xm_list,
)

__all__ = [
    "MigrateReader",
    "XenToolstack",
    "XlToolstack",
    "XmToolstack",
    "toolstack",
    "xl_run_state",
]


class MigrateReader(Protocol):
    """Reads a migration command's output lines as :class:`MigrateUpdate` s."""

    history: list[MigrateUpdate]
    malformed: list[ParseError]
    """Lines that began like a known message but did not fit it (skipped)."""
    receiver_domid: int | None
    """The domain the receiver restored the guest into, once the output names it."""

    @property
    def result(self) -> MigrateUpdate | None: ...

    def feed(self, line: str) -> list[MigrateUpdate]: ...

    def finish(self, exit_status: int | None) -> list[MigrateUpdate]: ...


class XenToolstack(Protocol):
    name: Literal["xl", "xm"]
    program: tuple[str, ...]
    """The command on the hosts (XenDriver's ``xl=`` overrides it, e.g. with sudo)."""
    reaches_destination: str
    """How the source reaches the destination's address, for messages."""
    can_stop_migration: bool

    def copy_names(self, guest: str) -> tuple[str, ...]:
        """Names the guest has during a migration, besides NAME--incoming/--migratedaway."""
        ...

    def domains(self, stdout: str) -> list[DomainInfo]:
        """``list``'s domains, Domain-0 included. May raise ParseError."""
        ...

    def host_info(self, host: str, stdout: str) -> HostInfo:
        """``info``. May raise ParseError."""
        ...

    def migrate_argv(self, program: Sequence[str], guest: str, address: str) -> list[str]: ...

    def migrate_reader(self) -> MigrateReader: ...

    def opening(self) -> list[MigrateUpdate]:
        """Updates to publish as the migration starts (before any output)."""
        ...


class XlToolstack:
    name: Literal["xl", "xm"] = "xl"
    program: tuple[str, ...] = ("xl",)
    reaches_destination: str = "over ssh"
    can_stop_migration: bool = True

    def copy_names(self, guest: str) -> tuple[str, ...]:
        return ()

    def domains(self, stdout: str) -> list[DomainInfo]:
        return [
            DomainInfo(d.name, xl_run_state(d.state), d.mem_mib, d.vcpus, d.domid)
            for d in parse_xl_list(stdout)
        ]

    def host_info(self, host: str, stdout: str) -> HostInfo:
        info = parse_xl_info(stdout)
        return HostInfo(
            host, info.free_memory_mib, info.total_memory_mib, f"Xen {info.xen_version}"
        )

    def migrate_argv(self, program: Sequence[str], guest: str, address: str) -> list[str]:
        # -vvv: libxl's debug lines, among them the suspend request the driver measures
        # the downtime from (hv_xen); xl passes the level on to migrate-receive.
        return [*program, "-vvv", "migrate", guest, address]

    def migrate_reader(self) -> MigrateReader:
        return XlMigrateParser()

    def opening(self) -> list[MigrateUpdate]:
        return []


def xl_run_state(state: XlState) -> DomainRunState:
    """The state letters of ``xl list`` as a driver-neutral state."""
    if state.dying:
        return "dying"
    if state.shutdown:
        return "crashed" if state.shutdown_reason is ShutdownReason.CRASH else "shutdown"
    if state.paused:
        return "paused"
    if state.blocked and not state.running:
        return "blocked"
    return "running"  # "r-----", or "------": runnable, waiting for a CPU


def xm_run_state(state: XmState) -> DomainRunState:
    """xm's ``rbpscd`` letters as a driver-neutral state."""
    if state.dying:
        return "dying"
    if state.crashed:
        return "crashed"
    if state.shutdown:
        return "shutdown"
    if state.paused:
        return "paused"
    if state.blocked and not state.running:
        return "blocked"
    return "running"  # "r-----", or "------": runnable, waiting for a CPU


class XmToolstack:
    name: Literal["xl", "xm"] = "xm"
    program: tuple[str, ...] = ("xm",)
    reaches_destination: str = "on xend's relocation port"
    can_stop_migration: bool = False

    def copy_names(self, guest: str) -> tuple[str, ...]:
        return (MIGRATING_PREFIX + guest,)

    def domains(self, stdout: str) -> list[DomainInfo]:
        # No ID: a domain xend manages that is not running (halted, its letters "------").
        return [
            DomainInfo(
                d.name,
                xm_run_state(d.state) if d.domid is not None else "shutdown",
                d.mem_mib,
                d.vcpus,
                d.domid,
            )
            for d in parse_xm_list(stdout).domains
        ]

    def host_info(self, host: str, stdout: str) -> HostInfo:
        info = parse_xm_info(stdout)
        version = info.xen_version
        return HostInfo(
            host,
            info.free_memory_mib,
            info.total_memory_mib,
            f"Xen {version}" if version is not None else None,
        )

    def migrate_argv(self, program: Sequence[str], guest: str, address: str) -> list[str]:
        return [*program, "migrate", "--live", guest, address]

    def migrate_reader(self) -> MigrateReader:
        return XmMigrateParser()

    def opening(self) -> list[MigrateUpdate]:
        return [XmMigrateParser.opening()]


def toolstack(name: Literal["xl", "xm"]) -> XenToolstack:
    return XmToolstack() if name == "xm" else XlToolstack()
