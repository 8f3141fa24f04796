"""The Xen driver: ``xl`` on the two hypervisor hosts.

What xl gives and what it does not:

* ``xl list`` is the domains' state (``xl list -l`` has the configuration but no state);
  during a migration the receiving copy is ``NAME--incoming`` and, just before the GO
  handshake, the sender's copy ``NAME--migratedaway``.
* ``xl migrate`` runs on the source and reaches the destination itself (``ssh HOST xl
  migrate-receive``), so HOST is the destination's address in lab.toml. Everything it
  says goes to stderr, the receiver's lines too (through ssh). Xen >= 4.6 reports the
  phases of a migration but no per-iteration page counts (Xen <= 4.5 with ``-v`` did);
  :class:`~backend.drivers.parse_xl.XlMigrateParser` reads both, and each of its
  updates becomes a ``migration.progress`` event with the extra fields ``phase``
  (started, precopy, stop-and-copy, done, failed) and ``xl_event``.
* xl reports neither the migration's total time (we measure it around the command) nor
  the downtime. The driver runs ``xl -vvv migrate`` (libxl's debug level: three ``-v``
  below xl's default) and **measures the downtime** itself: the time between the
  arrival of the sender's libxl line ``issuing PVH/HVM suspend request via XenBus
  control node`` (or ``via event channel``, or ``Calling xc_domain_shutdown on HVM
  domain``: libxl_dom_suspend.c, printed just before libxl asks the guest to suspend)
  and the arrival of the receiver's ``migration target: Domain started successsfully.``
  (xl_migrate.c, printed after ``libxl_domain_unpause`` returned). The guest runs until
  it obeys the request and runs again before the second line is printed, so this is an
  upper bound of the time the guest was stopped, which also holds the lines' latency
  (the second crosses the dom0-to-dom0 ssh as well). A missing line leaves
  ``downtime_ms`` None; the ping probe measures the guest's unreachable time beside it.
  ``-vvv`` adds about 170 debug lines per migration (191 in all in
  tests/data/xl/real-4.17), which the parser skips.
* xl cannot cancel a migration. :meth:`XenDriver.cancel` stops the ``xl migrate``
  process: while memory is still being copied the receiver then destroys its copy and
  the guest runs on at the source; once the guest is suspended it stays suspended, and
  the driver says so.

After a migration the driver looks at both hosts and tells where the guest is
(``migration.finished`` carries it as ``guest_host``; None when no single running copy
exists, e.g. after a failed final handshake, which leaves both copies stopped).

With ``[hypervisor] toolstack = "xm"`` (Xen 3.x, xend) the same driver runs ``xm``: what
differs between the toolstacks (output formats, the migrate command, progress, names
during a migration, cancelling) is a :class:`~backend.drivers.xen_toolstack.XenToolstack`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from backend.config import LOCAL, LabConfig
from backend.drivers import ParseError
from backend.drivers.base import (
    ALIVE,
    DomainInfo,
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
from backend.drivers.parse_xl import (
    MigratePhase,
    MigrateUpdate,
    XlDomainConfig,
    domain_faults,
    is_unknown_domain_error,
    parse_xl_list_long,
)
from backend.drivers.xen_toolstack import XenToolstack, toolstack
from backend.events import MigrationFinished, MigrationProgress, now
from backend.transport.base import CommandFailed, CommandResult, HostRunner, Stream

__all__ = ["XenDriver"]

CREATE_TIMEOUT_S = 120.0
# `xl shutdown -w` waits for the guest to power off: a busy guest takes a while.
SHUTDOWN_TIMEOUT_S = 300.0
# Updates that carry byte counts: frames sent (v1/v2 with progress), pages received
# (v1 receiver), all pages sent (v1 summary).
_COUNTED = {"frames", "restore-progress", "total-sent"}


def progress_event(domain: str, source: str, dest: str, update: MigrateUpdate) -> MigrationProgress:
    """One update of ``xl -v migrate``'s output as a progress event (and for ``miglab import``)."""
    counted = update.event in _COUNTED
    total = update.pages_total * 4096 if counted and update.pages_total else None
    # phase and xl_event: xl has no byte counts in Xen >= 4.6, so the phase is what a
    # console can show.
    return MigrationProgress.model_validate(
        {
            "domain": domain,
            "source": source,
            "dest": dest,
            "iteration": update.iteration,
            "transferred_bytes": update.bytes if counted else None,
            "total_bytes": total,
            "phase": update.phase.value,
            "xl_event": update.event,
        }
    )


# The two lines the downtime is measured between (see the module docstring).
SUSPEND_REQUESTED = "suspend-requested"
TARGET_STARTED = "target-started"


class DowntimeClock:
    """The downtime of one ``xl -vvv migrate``, from when the parser's updates arrived:
    the first ``suspend-requested`` (sender: libxl asks the guest to suspend) to the first
    ``target-started`` after it (receiver: the guest was unpaused). Either missing, or in
    the wrong order, or arriving together (no interval to measure: the same read, or the
    simulated lab's same 100 ms tick): None, never a guess."""

    def __init__(self) -> None:
        self.suspend_requested: float | None = None
        self.target_started: float | None = None

    def saw(self, update: MigrateUpdate, arrived: float) -> None:
        if update.event == SUSPEND_REQUESTED and self.suspend_requested is None:
            self.suspend_requested = arrived
        elif (
            update.event == TARGET_STARTED
            and self.suspend_requested is not None
            and self.target_started is None
        ):
            self.target_started = arrived

    @property
    def ms(self) -> float | None:
        if self.suspend_requested is None or self.target_started is None:
            return None
        if self.target_started <= self.suspend_requested:
            return None
        return round((self.target_started - self.suspend_requested) * 1000, 3)


class XenDriver(HypervisorBase):
    """xl (or xm) on both hosts; ``xl`` is the command prefix (e.g. ``("sudo", "-n", "xl")``),
    by default the toolstack's program."""

    def __init__(
        self,
        lab: LabConfig,
        runners: Mapping[str, HostRunner],
        publish: Publish,
        *,
        xl: Sequence[str] | None = None,
    ) -> None:
        super().__init__(lab, runners, publish)
        if lab.guest.config is None:
            raise DriverError('guest.config is required with driver = "xen": the xl config')
        self.config = lab.guest.config
        self.toolstack: XenToolstack = toolstack(lab.hypervisor.toolstack)
        self.xl = tuple(xl) if xl is not None else self.toolstack.program
        self._migrations: dict[str, asyncio.Task[CommandResult]] = {}

    async def _xl(self, host: str, *args: str, timeout: float = 60.0) -> CommandResult:
        return await self.runner(host).run([*self.xl, *args], timeout=timeout)

    def is_copy(self, name: str) -> bool:
        return super().is_copy(name) or name in self.toolstack.copy_names(self.guest)

    # -- looking ---------------------------------------------------------------------------

    async def domains(self, host: str) -> list[DomainInfo]:
        """The guest domains on ``host`` (Domain-0 left out), from ``xl list``."""
        result = (await self._xl(host, "list")).check()
        try:
            listed = self.toolstack.domains(result.stdout)
        except ParseError as exc:
            raise DriverError(f"{host}: cannot read `{self.toolstack.name} list`: {exc}") from None
        domains = [d for d in listed if d.domid != 0]
        self.report(host, domains)
        return domains

    async def domain_config(self, host: str, name: str | None = None) -> XlDomainConfig | None:
        """The running configuration of the guest (or ``name``): ``xl list -l``; None
        when no such domain runs on ``host``."""
        if self.toolstack.name != "xl":
            raise DriverError("domain_config reads `xl list -l`; for xm see parse_xm_list_long")
        result = await self._xl(host, "list", "-l", name or self.guest)
        if not result.ok:
            if is_unknown_domain_error(result.stderr):
                return None
            raise CommandFailed(result)
        try:
            configs = parse_xl_list_long(result.stdout)
        except ParseError as exc:
            raise DriverError(f"{host}: cannot read `xl list -l`: {exc}") from None
        return configs[0] if configs else None

    async def info(self, host: str) -> HostInfo:
        result = (await self._xl(host, "info")).check()
        try:
            return self.toolstack.host_info(host, result.stdout)
        except ParseError as exc:
            raise DriverError(f"{host}: cannot read `{self.toolstack.name} info`: {exc}") from None

    # -- changing --------------------------------------------------------------------------

    async def create(self, host: str, *, dry_run: bool = False) -> OperationResult:
        if await self.check_boot(host):
            return OperationResult(False, [], dry_run, f"{self.guest} already runs on {host}")
        planner = Planner(dry_run)
        await planner.mutate(
            self.runner(host), [*self.xl, "create", self.config], timeout=CREATE_TIMEOUT_S
        )
        if not dry_run:
            await self.domains(host)
        return planner.result(f"boot {self.guest} on {host} from {self.config}")

    async def shutdown(self, host: str, *, dry_run: bool = False) -> OperationResult:
        """``xl shutdown -w``: the guest powers itself off (it needs PV drivers)."""
        if not any(d.name == self.guest for d in await self.copies(host)):
            return OperationResult(False, [], dry_run, f"{self.guest} is not on {host}")
        planner = Planner(dry_run)
        await planner.mutate(
            self.runner(host),
            [*self.xl, "shutdown", "-w", self.guest],
            timeout=SHUTDOWN_TIMEOUT_S,
        )
        if not dry_run:
            await self.domains(host)
        return planner.result(f"shut down {self.guest} on {host}")

    async def destroy(self, host: str, *, dry_run: bool = False) -> OperationResult:
        """``xl destroy`` every copy of the guest on ``host``, migration leftovers too."""
        copies = await self.copies(host)
        if not copies:
            return OperationResult(False, [], dry_run, f"{self.guest} is not on {host}")
        planner = Planner(dry_run)
        for domain in copies:
            await planner.mutate(self.runner(host), [*self.xl, "destroy", domain.name])
        if not dry_run:
            await self.domains(host)
        return planner.result(f"destroy {', '.join(d.name for d in copies)} on {host}")

    # -- migrating -------------------------------------------------------------------------

    def _migrate_argv(self, source: str, dest: str) -> list[str]:
        if source == dest:
            raise Refused(f"the guest cannot migrate from {source} to itself")
        self.runner(source)
        self.runner(dest)
        address = self.lab.host(dest).address
        if address == LOCAL:
            raise DriverError(
                f'{dest}\'s address is "local": {self.toolstack.name} on {source} needs an '
                f"address it can reach {dest} at {self.toolstack.reaches_destination}"
            )
        return self.toolstack.migrate_argv(self.xl, self.guest, address)

    async def migrate_plan(self, source: str, dest: str) -> list[HostCommand]:
        return [HostCommand(source, tuple(self._migrate_argv(source, dest)))]

    async def migrate(self, source: str, dest: str) -> MigrationOutcome:
        argv = self._migrate_argv(source, dest)
        here = [d for d in await self.copies(source) if d.name == self.guest]
        if not here or here[0].state not in ALIVE:
            raise Refused(f"{self.guest} is not running on {source}")
        domid = here[0].domid
        there = await self.copies(dest)
        if there:
            names = ", ".join(f"{d.name} ({d.state})" for d in there)
            raise Refused(f"{dest} already has a copy of the guest: {names}")

        parser = self.toolstack.migrate_reader()
        downtime = DowntimeClock()

        def on_line(stream: Stream, line: str) -> None:
            seen = len(parser.malformed)
            updates = parser.feed(line)
            for exc in parser.malformed[seen:]:  # a changed tool: say so, keep migrating
                self.note(
                    f"{source}: unexpected {self.toolstack.name} migrate output: {exc}", "warning"
                )
            arrived = now()
            for update in updates:
                downtime.saw(update, arrived)
                self._progress(source, dest, update)

        for update in self.toolstack.opening():  # xm: no progress will come
            self._progress(source, dest, update)
        started = now()  # the event clock: simulated time in the simulated lab
        task = asyncio.ensure_future(
            self.runner(source).run(argv, timeout=None, on_line=on_line, long_running=True)
        )
        self._migrations[source] = task
        try:
            await asyncio.wait({task})  # returns, without raising, when cancel() stops it
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait({task})
            raise
        finally:
            self._migrations.pop(source, None)
        elapsed_ms = round((now() - started) * 1000, 3)

        if task.cancelled():
            final: MigrateUpdate | None = None
            error: str | None = "cancelled: xl migrate was stopped"
        else:
            for update in parser.finish(task.result().exit_status):
                self._progress(source, dest, update)
            final = parser.result
            error = final.error if final is not None else "xl migrate gave no result"
            causes = [c for c in (final.causes if final is not None else ()) if c != error]
            if causes:  # e.g. the libxl error behind "Migration failed, resuming at sender."
                error = f"{error} {self.toolstack.name} said: " + "; ".join(causes)
        ok = final is not None and final.phase is MigratePhase.DONE
        guest_host, placement, found = await self._placement(source, dest)
        receiver_domid = parser.receiver_domid
        died_at_dest = ""
        if ok and receiver_domid is not None:
            # xl's success says the target unpaused the guest, not that it lived on.
            died_at_dest = await self._domain_fate(dest, receiver_domid, found[dest])
            if died_at_dest:
                ok = False
                error = f"{self.toolstack.name} reported success, but{died_at_dest[1:]}"
        if ok and guest_host != dest:
            self.note(f"{self.toolstack.name} reported success but {placement}", "warning")
        if not ok:
            error = f"{error} ({placement})"
            if domid is not None and not died_at_dest:
                error += await self._domain_fate(source, domid, found[source])
            self.note(f"migration of {self.guest} failed: {error}", "error")
        iterations = [u for u in parser.history if u.event == "iteration-stats"]
        sent = next((u.bytes for u in parser.history if u.event == "total-sent"), None)
        downtime_ms = downtime.ms if ok else None
        outcome = MigrationOutcome(
            ok=ok,
            total_time_ms=elapsed_ms,
            downtime_ms=downtime_ms,
            transferred_bytes=sent,
            iterations=len(iterations) or None,
            error=None if ok else error,
        )
        # guest_host is an extra field (events allow them) until MigrationFinished has it.
        self._publish(
            MigrationFinished.model_validate(
                {
                    "domain": self.guest,
                    "source": source,
                    "dest": dest,
                    "ok": ok,
                    "total_time_ms": elapsed_ms,
                    "downtime_ms": downtime_ms,
                    "transferred_bytes": sent,
                    "iterations": outcome.iterations,
                    "error": outcome.error,
                    "guest_host": guest_host,
                }
            )
        )
        return outcome

    def _progress(self, source: str, dest: str, update: MigrateUpdate) -> None:
        self._publish(progress_event(self.guest, source, dest, update))

    async def _placement(
        self, source: str, dest: str
    ) -> tuple[str | None, str, dict[str, list[DomainInfo]]]:
        """Where the guest runs after a migration, a sentence saying so, and the copies
        of the guest on each host."""
        found = {host: await self.copies(host) for host in (source, dest)}
        running = [
            host
            for host, copies in found.items()
            if any(d.name == self.guest and d.state in ALIVE for d in copies)
        ]
        if len(running) == 1:
            return running[0], f"the guest runs on {running[0]}", found
        listing = "; ".join(
            f"{host}: " + (", ".join(f"{d.name} ({d.state})" for d in copies) or "none")
            for host, copies in found.items()
        )
        return (
            None,
            f"no single running copy, check both hosts before resuming one: {listing}",
            found,
        )

    async def _domain_fate(self, source: str, domid: int, copies: list[DomainInfo]) -> str:
        """What became of the guest's domain ``domid`` on ``source`` after a failed
        migration: a new domain in its place (xl's on_reboot restarted it: a guest that
        rebooted, or an HVM/PVH guest's triple fault, which Xen turns into a reboot), and
        what Xen's console (``xl dmesg``) says of it; ``copies``: the guest's copies there
        now. Empty when there is nothing to say."""
        if any(d.domid == domid and (d.state in ALIVE or d.name != self.guest) for d in copies):
            return ""  # still there: running, or suspended as NAME--migratedaway
        said = ""
        now_there = [d for d in copies if d.name == self.guest]
        if now_there and now_there[0].domid == domid:  # kept: on_crash = "preserve"
            said += f"; its domain {domid} on {source} is {now_there[0].state}"
        elif now_there and now_there[0].domid is not None:
            new = now_there[0]
            said += (
                f"; its domain {domid} on {source} died and {self.guest} is there again as "
                f"a new domain {new.domid} ({new.state}): it rebooted or crashed during the "
                "migration and xl restarted it (on_reboot)"
            )
        result = await self._xl(source, "dmesg")
        if not result.ok:
            stderr = result.stderr.strip() or f"exit status {result.exit_status}"
            return said + f"; `{self.toolstack.name} dmesg` on {source} failed: {stderr}"
        faults = domain_faults(result.stdout, domid)
        if faults:
            said += f"; Xen on {source} said of domain {domid}: " + " | ".join(faults)
        return said

    def cancel_plan(self, source: str) -> list[HostCommand]:
        """xl's migration is cancelled by stopping its command: nothing more is sent."""
        return []

    async def cancel(self, source: str) -> None:
        """Stop the ``xl migrate`` this driver runs from ``source`` (xl has no cancel)."""
        task = self._migrations.get(source)
        if task is None or task.done():
            self.note(f"no migration started here runs from {source}", "warning")
            return
        if not self.toolstack.can_stop_migration:
            self.note(
                f"{self.toolstack.name} cannot cancel a migration: it only asked xend, which "
                f"goes on migrating {self.guest} from {source}",
                "warning",
            )
            return
        self.note(
            f"stopping xl migrate on {source}: before the guest is suspended it keeps "
            "running there; after, it stays suspended",
            "warning",
        )
        task.cancel()
