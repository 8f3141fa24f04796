"""The contracts between LabController and the drivers.

Every driver runs commands only through a :class:`~backend.transport.base.HostRunner`
(so the same driver works on SSH hosts, local hosts, the sandbox and the simulated
lab) and reports what it did as events through ``publish``.

Operations that change a host look first and act only if needed, and take
``dry_run``: then they still run the read-only commands they need to decide, but
return the mutating commands they *would* run instead of running them. Either way
the result lists the exact commands per host, which is what the console's
confirmation dialogs and ``--dry-run`` show.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from backend.events import Event
from backend.transport.base import CommandFailed, CommandResult, HostRunner

Publish = Callable[[Event], None]


@dataclass(frozen=True)
class HostCommand:
    """One command on one host, as the user would type it."""

    host: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.host}: {shlex.join(self.argv)}"


@dataclass
class OperationResult:
    """What an operation did (or, in a dry run, would do)."""

    changed: bool
    commands: list[HostCommand] = field(default_factory=list)
    dry_run: bool = False
    detail: str = ""


class DriverError(Exception):
    """An operation could not be done; the message says which host and why."""


class Refused(DriverError):
    """An operation that would be unsafe (unexport while in use, a second guest copy)."""


class Planner:
    """Runs or records mutating commands for one operation, and keeps the list."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.commands: list[HostCommand] = []

    async def mutate(
        self, runner: HostRunner, argv: Sequence[str], *, timeout: float | None = 60.0
    ) -> CommandResult | None:
        """Run ``argv`` (or only record it in a dry run); raise CommandFailed if it fails."""
        self.commands.append(HostCommand(runner.name, tuple(argv)))
        if self.dry_run:
            return None
        result = await runner.run(argv, timeout=timeout)
        if not result.ok:
            raise CommandFailed(result)
        return result

    def result(self, detail: str = "") -> OperationResult:
        return OperationResult(bool(self.commands), list(self.commands), self.dry_run, detail)


# -- storage target --------------------------------------------------------------------


@dataclass(frozen=True)
class LunInfo:
    lun: int
    size_bytes: int | None
    backing: str | None


@dataclass(frozen=True)
class TargetInfo:
    iqn: str
    tid: int | None
    luns: tuple[LunInfo, ...]
    initiators: tuple[str, ...]  # initiator names (or addresses) connected now


@dataclass(frozen=True)
class TargetStatus:
    targets: tuple[TargetInfo, ...]

    def find(self, iqn: str) -> TargetInfo | None:
        return next((t for t in self.targets if t.iqn == iqn), None)


class TargetDriver(Protocol):
    """tgt, LIO or IET on the storage host. Configured from lab.toml's [storage]."""

    async def status(self) -> TargetStatus: ...

    async def export(self, *, dry_run: bool = False) -> OperationResult:
        """Target + LUN + access, as lab.toml asks; nothing if already so."""
        ...

    async def unexport(self, *, force: bool = False, dry_run: bool = False) -> OperationResult:
        """Remove the export; raises Refused while an initiator is connected unless forced."""
        ...


# -- initiator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InitiatorSessionInfo:
    host: str
    portal: str
    iqn: str
    device: str | None  # the block device path where known


class InitiatorDriver(Protocol):
    """How a hypervisor host reaches the shared disk (open-iscsi, or QEMU's libiscsi)."""

    async def discover(self, host: str) -> list[str]:
        """The IQNs the portal offers to ``host``."""
        ...

    async def login(
        self, host: str, *, dry_run: bool = False, target_ready: bool = True
    ) -> OperationResult:
        """Log ``host`` in to the shared disk (nothing if it is already).

        ``target_ready=False`` (dry runs only): the export that comes first is only
        planned, so plan the login without asking the target for what is not there yet.
        """
        ...

    async def logout(self, host: str, *, dry_run: bool = False) -> OperationResult: ...

    async def sessions(self, host: str) -> list[InitiatorSessionInfo]: ...


# -- hypervisor --------------------------------------------------------------------------

DomainRunState = Literal["running", "paused", "blocked", "shutdown", "crashed", "dying", "other"]


ALIVE = frozenset({"running", "blocked", "paused", "other"})
"""Domain states in which a guest holds its disk (it may write to it): a second copy
anywhere else would corrupt it."""
ABSENT = "absent"
"""The ``domain.state`` of a copy that is gone from a host."""


@dataclass(frozen=True)
class DomainInfo:
    name: str
    state: DomainRunState
    memory_mb: int | None = None
    vcpus: int | None = None
    domid: int | None = None


@dataclass(frozen=True)
class HostInfo:
    host: str
    free_memory_mb: int | None
    total_memory_mb: int | None
    hypervisor_version: str | None


@dataclass(frozen=True)
class MigrationOutcome:
    ok: bool
    total_time_ms: float | None = None
    downtime_ms: float | None = None  # as the hypervisor reports it (None if it does not)
    transferred_bytes: int | None = None
    iterations: int | None = None
    error: str | None = None


class HypervisorDriver(Protocol):
    """Xen (xl) or QEMU on the hypervisor hosts. Publishes DomainState and
    MigrationProgress / MigrationFinished events."""

    async def domains(self, host: str) -> list[DomainInfo]: ...

    async def info(self, host: str) -> HostInfo: ...

    async def create(self, host: str, *, dry_run: bool = False) -> OperationResult:
        """Boot the lab's guest on ``host``."""
        ...

    async def shutdown(self, host: str, *, dry_run: bool = False) -> OperationResult: ...

    async def destroy(self, host: str, *, dry_run: bool = False) -> OperationResult: ...

    async def migrate(self, source: str, dest: str) -> MigrationOutcome:
        """Live-migrate the guest from ``source`` to ``dest``; progress arrives as events."""
        ...

    async def migrate_plan(self, source: str, dest: str) -> list[HostCommand]:
        """The commands (and QMP requests, as pseudo-commands) a migration would run."""
        ...

    async def cancel(self, source: str) -> None:
        """Stop a running migration (the guest stays on the source)."""
        ...

    def cancel_plan(self, source: str) -> list[HostCommand]:
        """What :meth:`cancel` sends beyond stopping the migration's own commands (QEMU's
        QMP ``migrate_cancel``, as a pseudo-command); empty when stopping them is all."""
        ...
