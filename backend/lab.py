"""LabController: the study's steps as safe, idempotent operations on a whole lab.

prepare (export the disk, log both hypervisor hosts in), boot, migrate, cancel,
shutdown, destroy, logout, unexport, where. Each checks before it acts:

- the destination is reachable and has enough free memory for the guest;
- the shared disk's session is present on the host that will run the guest;
- the guest is NOT running on any other host: two running copies on one shared
  disk corrupt its filesystem, so that is refused with a clear message;
- a host is not logged out of the disk, nor the disk's export removed, while the
  guest runs from it.

Every operation has a dry run that returns the exact commands per host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from backend.config import LabConfig
from backend.drivers.base import (
    ALIVE,
    DomainInfo,
    DriverError,
    HostCommand,
    HypervisorDriver,
    InitiatorDriver,
    MigrationOutcome,
    OperationResult,
    Publish,
    Refused,
    TargetDriver,
)
from backend.events import Note
from backend.transport.base import CommandFailed, HostRunner, TransportError


@dataclass
class Placement:
    """Where the guest is, as both hypervisor hosts answered."""

    running_on: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str | None:
        return self.running_on[0] if len(self.running_on) == 1 else None

    def unasked(self) -> str:
        """Each host that could not be asked, and why (its error names the command and
        its stderr); empty when both answered."""
        return "; ".join(
            why if why.startswith(f"{host}:") else f"{host}: {why}"
            for host, why in self.unreachable.items()
        )


class LabController:
    """High-level operations on one lab; every result lists the commands it ran."""

    def __init__(
        self,
        lab: LabConfig,
        runners: Mapping[str, HostRunner],
        publish: Publish,
        *,
        target: TargetDriver | None = None,
        initiator: InitiatorDriver | None = None,
        hypervisor: HypervisorDriver | None = None,
    ) -> None:
        # Imported here: the factories load every driver, needed only once a lab is made.
        from backend.drivers.factories import hypervisor_driver, initiator_driver

        self.lab = lab
        self._runners = runners
        self._publish = publish
        self.hv_hosts: tuple[str, str] = (lab.hypervisor.hosts[0], lab.hypervisor.hosts[1])
        self._target = target
        self.initiator = initiator or initiator_driver(lab, runners, publish)
        self.hypervisor = hypervisor or hypervisor_driver(lab, runners, publish)

    @property
    def target(self) -> TargetDriver:
        """The target driver, made once the storage host is connected (else the host's
        TransportError): what needs only the hypervisor hosts works without it."""
        if self._target is None:
            from backend.drivers.factories import target_driver

            runner = self._runners[self.lab.storage.host]
            self._target = target_driver(self.lab, runner, self._publish)
        return self._target

    def other(self, host: str) -> str:
        first, second = self.hv_hosts
        return second if host == first else first

    def _note(self, text: str, level: str = "info") -> None:
        self._publish(Note(text=text, level=level))  # type: ignore[arg-type]

    # -- looking ---------------------------------------------------------------------------

    async def _guest_on(self, host: str) -> DomainInfo | None:
        name = self.lab.guest.name
        domains = await self.hypervisor.domains(host)
        return next((d for d in domains if d.name == name and d.state in ALIVE), None)

    async def where(self) -> Placement:
        """Ask both hypervisor hosts (at once) whether they run the guest. A host that
        cannot be asked (no connection, its list command failed or timed out, its
        output unreadable) is in ``unreachable`` with why: never taken as "not there"."""
        placement = Placement()

        async def ask(host: str) -> None:
            try:
                if await self._guest_on(host) is not None:
                    placement.running_on.append(host)
            except (TransportError, DriverError, CommandFailed) as exc:
                placement.unreachable[host] = str(exc)

        await asyncio.gather(*(ask(host) for host in self.hv_hosts))
        placement.running_on.sort(key=self.hv_hosts.index)
        if len(placement.running_on) > 1:
            self._note(
                f"the guest {self.lab.guest.name} runs on BOTH {' and '.join(self.hv_hosts)}: "
                "two copies are writing to one shared disk; destroy one now",
                "error",
            )
        return placement

    # -- pre-checks ------------------------------------------------------------------------

    async def _check_can_run_on(self, host: str) -> None:
        """Refuse unless ``host`` can take the guest (reachable, memory, disk session)."""
        if host not in self.hv_hosts:
            raise Refused(
                f"{host} is not a hypervisor host of this lab ({', '.join(self.hv_hosts)})"
            )
        try:
            info = await self.hypervisor.info(host)
        except (TransportError, DriverError) as exc:
            raise Refused(f"{host} is not reachable: {exc}") from exc
        need = self.lab.guest.memory_mb
        if info.free_memory_mb is not None and info.free_memory_mb < need:
            raise Refused(f"{host} has {info.free_memory_mb} MB free, the guest needs {need} MB")
        sessions = await self.initiator.sessions(host)
        if not any(s.iqn == self.lab.storage.iqn for s in sessions):
            raise Refused(
                f"{host} has no session to the shared disk {self.lab.storage.iqn}; "
                "prepare the storage first (export and log in)"
            )

    async def _check_not_running_elsewhere(self, host: str) -> Placement:
        placement = await self.where()
        others = [h for h in placement.running_on if h != host]
        if others:
            raise Refused(
                f"the guest {self.lab.guest.name} is already running on {others[0]}; "
                f"starting it on {host} too would put two running copies on one shared disk "
                "and corrupt its filesystem"
            )
        if placement.unreachable:
            host_down, why = next(iter(placement.unreachable.items()))
            raise Refused(
                f"cannot tell whether the guest runs on {host_down} ({why}); refusing to start "
                f"a possible second copy on {host}"
            )
        return placement

    # -- operations ------------------------------------------------------------------------

    async def prepare(self, *, dry_run: bool = False) -> OperationResult:
        """Export the disk and log both hypervisor hosts in; nothing if already so.

        A dry run whose export would change the target plans the logins that would
        follow it, without asking the target for what is not there yet.
        """
        exported = await self.target.export(dry_run=dry_run)
        target_ready = not (dry_run and exported.changed)
        logins = await self._login_both(dry_run=dry_run, target_ready=target_ready)
        commands = exported.commands + [c for r in logins for c in r.commands]
        changed = exported.changed or any(r.changed for r in logins)
        return OperationResult(changed, commands, dry_run)

    async def _login_both(self, *, dry_run: bool, target_ready: bool) -> list[OperationResult]:
        """Log both hosts in at once; when one fails, stop the other (and wait for it)."""
        tasks = {
            host: asyncio.ensure_future(
                self.initiator.login(host, dry_run=dry_run, target_ready=target_ready)
            )
            for host in self.hv_hosts
        }
        ended_first: set[asyncio.Future[OperationResult]] = set()
        try:
            ended_first, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
        finally:  # also when prepare itself is cancelled
            pending = [task for task in tasks.values() if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        # The failure that stopped the other login first: a login stopped for it may
        # end in an error of its own ("cancelled"), which is no news.
        in_order = sorted(tasks.items(), key=lambda item: item[1] not in ended_first)
        failures = [
            (host, error)
            for host, task in in_order
            if not task.cancelled() and (error := task.exception()) is not None
        ]
        if failures:
            host, error = failures[0]
            if isinstance(error, (DriverError, TransportError, CommandFailed)):
                raise DriverError(f"cannot log {host} in to the shared disk: {error}") from error
            raise error
        return [task.result() for task in tasks.values()]

    async def boot(self, host: str, *, dry_run: bool = False) -> OperationResult:
        """Start the guest on ``host`` after the pre-checks; nothing if it runs there already."""
        placement = await self._check_not_running_elsewhere(host)
        if placement.running_on == [host]:
            return OperationResult(False, [], dry_run, f"already running on {host}")
        await self._check_can_run_on(host)
        return await self.hypervisor.create(host, dry_run=dry_run)

    async def migrate(self, dest: str | None = None) -> MigrationOutcome:
        """Live-migrate the guest to ``dest`` (default: the other host)."""
        source, dest = await self._migration_ends(dest)
        await self._check_can_run_on(dest)
        self._note(f"migrating {self.lab.guest.name} from {source} to {dest}")
        return await self.hypervisor.migrate(source, dest)

    async def migrate_plan(self, dest: str | None = None) -> list[HostCommand]:
        source, dest = await self._migration_ends(dest)
        return await self.hypervisor.migrate_plan(source, dest)

    async def _migration_ends(self, dest: str | None) -> tuple[str, str]:
        placement = await self.where()
        if len(placement.running_on) > 1:
            raise Refused("the guest runs on both hosts; resolve that before migrating")
        if not placement.running_on:
            if placement.unreachable:
                raise Refused(
                    f"cannot tell where the guest runs: could not ask {placement.unasked()}"
                )
            raise Refused(f"the guest {self.lab.guest.name} is not running; boot it first")
        source = placement.running_on[0]
        dest = dest or self.other(source)
        if dest == source:
            raise Refused(f"the guest already runs on {dest}")
        return source, dest

    async def cancel_migration(self) -> None:
        placement = await self.where()
        for host in placement.running_on:
            await self.hypervisor.cancel(host)

    async def plan_cancel_migration(self) -> list[HostCommand]:
        """What cancelling a migration sends beyond stopping its commands, as the driver
        says (QEMU's QMP ``migrate_cancel`` on the source); empty when the guest's hosts
        cannot be asked (stopping the commands is then all a cancel can do)."""
        try:
            sources = await self.guest_hosts()
        except (TransportError, DriverError, CommandFailed):
            return []
        return [c for source in sources for c in self.hypervisor.cancel_plan(source)]

    async def shutdown(self, *, dry_run: bool = False) -> OperationResult:
        """Shut the guest down wherever it runs; nothing if it runs nowhere."""
        placement = await self.where()
        results = [await self.hypervisor.shutdown(h, dry_run=dry_run) for h in placement.running_on]
        commands = [c for r in results for c in r.commands]
        return OperationResult(bool(commands), commands, dry_run)

    async def shutdown_on(self, host: str, *, dry_run: bool = False) -> OperationResult:
        """Shut the guest down on ``host`` (the console's ``s``)."""
        return await self.hypervisor.shutdown(host, dry_run=dry_run)

    async def destroy_on(self, host: str, *, dry_run: bool = False) -> OperationResult:
        """Destroy the guest on ``host`` at once (the console's ``shift+d``)."""
        return await self.hypervisor.destroy(host, dry_run=dry_run)

    # -- the shared disk -------------------------------------------------------------------

    async def guest_hosts(self) -> list[str]:
        """The hypervisor hosts the guest runs on now (asked of both at once). A host that
        cannot be asked raises its error: never taken as "not there"."""
        found = await asyncio.gather(*(self.hypervisor.domains(h) for h in self.hv_hosts))
        guest = self.lab.guest.name
        return [
            host
            for host, domains in zip(self.hv_hosts, found, strict=True)
            if any(d.name == guest and d.state in ALIVE for d in domains)
        ]

    async def refuse_while_guest_runs(self, where: str | None, what: str) -> None:
        """Refuse ``what`` while the guest runs (on ``where``, or anywhere): it would lose
        its disk in the middle of writing to it."""
        running = [h for h in await self.guest_hosts() if where is None or h == where]
        if running:
            raise Refused(
                f"the guest runs on {running[0]} from the shared disk; {what} would pull the "
                "disk from under it: shut the guest down (s) or destroy it (shift+d) first"
            )

    async def logout(self, host: str, *, dry_run: bool = False) -> OperationResult:
        """Log ``host`` out of the shared disk; refused while the guest runs there."""
        await self.refuse_while_guest_runs(host, f"logging {host} out")
        return await self.initiator.logout(host, dry_run=dry_run)

    async def unexport(self, *, dry_run: bool = False) -> OperationResult:
        """Remove the disk's export (its sessions too); refused while the guest runs."""
        await self.refuse_while_guest_runs(None, "removing the export")
        return await self.target.unexport(force=True, dry_run=dry_run)
