"""The experiment runner behind ``miglab run`` and the console: a scenario's timeline on a lab.

One run, on a :class:`~backend.lab_session.LabSession` (its bus, hosts, clock, drivers
and session log): connect the hosts it needs, begin the session log (the session writes
it), prepare the storage (idempotent), boot the guest if it runs nowhere, then per
repetition::

    RepetitionStarted -> [DiskStarted] -> warmup -> baseline -> migrating
                      -> [between -> migrating ...] -> after

with the scenario's probes and workloads running from the start of the warm-up to
the end of the "after" part, and stopped before the next repetition. The events are
exactly those :mod:`backend.experiments.metrics` reads (its docstring is the log
format). ``sequence = "one-at-a-time"`` runs that timeline once per probe or workload,
each alone; ``compare_disks`` once per disk, each arm after a :class:`DiskStarted`.

How things run and stop:

* Every probe and workload is one ``long_running`` command on its runner: "console"
  (this machine), "storage" (the storage host), "guest" (an SSH connection into the
  guest, :meth:`Hosts.open_guest`) or a lab host. The entry's probe
  (:class:`backend.probes.Probe`) gives its argv for this run (:class:`RunContext`) and
  a parser; its stdout lines go through that parser into
  :class:`~backend.events.Sample` events. Stopping one cancels its
  task: the transport stops the whole process tree (SIGTERM, then SIGKILL). ping then
  prints no statistics, which nothing here needs (every reply is a sample already).
  Each tool also gets a time limit well past the planned end (``--time``, ``-w``,
  ``-t``), so that a console killed outright leaves nothing running for long.
* A probe that asks for one (``Probe.scratch_dir``: dbench without a ``directory``)
  gets a fresh scratch directory on its host (``mktemp -d``), removed when it stops. A
  probe with trees (``Probe.trees``: a build's ``directory`` list) runs in the first
  one its host has; none there ends the run.
* Cancelling the task that runs :meth:`ExperimentRunner.run` (Ctrl-C, the console's
  cancel) stops a migration in progress (the driver leaves the guest on one host),
  stops every probe and workload, and closes the log with status "interrupted". The
  cleanup runs shielded from further cancels.
* A failed migration ends the run after cleanup (status "failed"); the log has the
  driver's ``migration.finished`` with ok=false (the runner adds one when the driver
  could not, e.g. a refused pre-check). A lab host that disconnects ends the run the
  same way. The guest's own SSH connection is not watched: it may drop while the
  guest migrates (that outage is what the experiment measures).
* A probe or workload that ends before the first migration of its stage ends the run
  (there is nothing to compare with); after that it is noted and the run goes on
  (e.g. a workload whose SSH channel into the guest broke during the migration, or a
  RAM dirtier the guest's OOM killer ended). The guest itself must survive: at the end
  of a stage that migrated it, a guest that does not answer over SSH, or that rebooted
  (its kernel's boot id changed), ends the run as failed; its probes' silence after
  the migration would otherwise pass for a run that went well.

The guest and the storage stay as the run leaves them (the guest keeps running on
the host it migrated to): they are the lab's state, not the run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import shlex
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from backend.aio import wait_for
from backend.drivers.base import DriverError, HostCommand, MigrationOutcome
from backend.events import (
    DiskStarted,
    Event,
    ExperimentFinished,
    ExperimentStarted,
    HostState,
    MigrationFinished,
    Note,
    Phase,
    RepetitionStarted,
)
from backend.experiments.metrics import Analysis, analyze
from backend.experiments.scenarios import Entry, Scenario, describe_timeline
from backend.lab import LabController
from backend.probes import LineParser, RunContext
from backend.session import SessionLogWriteError
from backend.transport.base import CommandFailed, CommandResult, HostRunner, TransportError
from backend.transport.local import LocalRunner

if TYPE_CHECKING:
    from backend.lab_session import LabSession

__all__ = [
    "CONSOLE",
    "ExperimentRunner",
    "PlanStep",
    "RunAborted",
    "RunPlan",
    "RunResult",
    "RunStatus",
    "Sleep",
    "SwitchDisk",
]

RunStatus = Literal["ok", "failed", "interrupted", "crashed"]
SwitchDisk = Callable[[str], Awaitable[None]]
"""Puts the guest on disk "local" or "iscsi" (a disk comparison's arms); the lab's own."""
Sleep = Callable[[float], Awaitable[None]]
"""Waits that many seconds on the lab's clock (a simulated lab has a clock of its own)."""

CONSOLE = "console"
"""The runner name of probes that run on this machine (``where = "console"``)."""

# How long a freshly booted guest may take to answer (SSH, or ping), and how often to try.
GUEST_WAIT_S = 180.0
GUEST_RETRY_S = 2.0
# A stop that takes longer than this is reported (the host may be gone), not waited for.
STOP_TIMEOUT_S = 20.0
# Cleanup commands (scratch directories, where the guest is) on a host that may be gone.
CLEANUP_COMMAND_S = 15.0
# Time limits given to the tools themselves: the planned length plus this much per
# migration (a non-converging one runs for minutes) and a margin.
MIGRATION_ALLOWANCE_S = 1800.0
LIMIT_MARGIN_S = 120.0
# The guest kernel's id of its boot: read when the run starts using the guest and again
# when a stage that migrated it ends. A guest that died after its migration (Xen under
# TCG: a vCPU triple fault, which Xen turns into a reboot that xl restarts) left its
# probes silent and their stop unconfirmed, yet the run said "ok"; now it fails.
GUEST_BOOT_ID = "/proc/sys/kernel/random/boot_id"
# How long the guest may take to answer that (a pooled shell's `cat`: about a second
# even with 20 sysbench threads on a TCG guest's vCPUs).
GUEST_CHECK_S = 60.0
_ABORTING = (DriverError, CommandFailed, TransportError)


class RunAborted(Exception):
    """The run cannot go on; the message says which host and why."""


class _MigrationFailed(RunAborted):
    pass


@dataclass(frozen=True)
class RunResult:
    """How a run ended, its log, and the metrics of what it recorded."""

    status: RunStatus
    log_path: Path | None
    analysis: Analysis
    migrations: tuple[MigrationOutcome, ...]
    error: str | None = None
    log_error: str | None = None
    """Why the session log could not be written (it is kept up to its last complete line)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def migrations_ok(self) -> bool:
        """Every migration that was attempted succeeded."""
        return all(m.ok for m in self.migrations)


@dataclass(frozen=True)
class PlanStep:
    """One part of a dry run: what it is, and the commands per host."""

    title: str
    commands: tuple[HostCommand, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class RunPlan:
    """What :meth:`ExperimentRunner.run` would do, as ``--dry-run`` prints it."""

    scenario: Scenario
    repetitions: int
    steps: tuple[PlanStep, ...]

    def render(self) -> str:
        s = self.scenario
        reps = f"{self.repetitions} repetition{'s' if self.repetitions != 1 else ''}"
        lines = [
            f"Plan of {s.id}: {s.title}",
            f"  {describe_timeline(s.timeline, s.migrations)}; {reps}"
            + ("; one at a time" if s.sequence == "one-at-a-time" else ""),
        ]
        for step in self.steps:
            lines += ["", step.title]
            if step.note:
                lines.append(f"  ({step.note})")
            lines += [f"  {c.host}: {show_argv(c.argv)}" for c in step.commands]
        return "\n".join(lines) + "\n"


def show_argv(argv: Sequence[str]) -> str:
    """A command as a user would type it, an inline shell script shortened to ``<script>``."""
    return shlex.join("<script>" if "\n" in arg else arg for arg in argv)


# --------------------------------------------------------------------------- launches


@dataclass
class _Launch:
    """One probe or workload of a stage: where and how it runs, and its task once started."""

    entry: Entry
    runner: HostRunner
    label: str
    """The host name its samples and messages carry."""
    argv: list[str]
    parser: LineParser
    scratch: str | None = None
    """A directory made for it in the guest, removed when it stops."""
    task: asyncio.Task[CommandResult] | None = None
    stopping: bool = False

    @property
    def name(self) -> str:
        return f"{self.entry.kind} on {self.label}"


T = TypeVar("T")


async def _finish_despite_cancel(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end even if the caller is cancelled meanwhile (then re-raise)."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


# --------------------------------------------------------------------------- the runner


class ExperimentRunner:
    """Runs ``scenario`` once on ``session``'s lab; the console and ``miglab run`` share it.

    Made by :meth:`LabSession.experiment <backend.lab_session.LabSession.experiment>`.
    The session's hosts may already be open (the console's); the runner has the session
    connect the hosts it needs that are not, and leaves closing them to the session. It
    opens (and closes) its own SSH connection into the guest unless ``guest`` is given.
    Everything it does is published on the session's bus. With ``records`` the run
    begins the session's log (its header names the run's hosts, ``scenario`` and
    ``campaign``: the run's place in a campaign, its group and parameters) and ends it
    with the run's status; without, the run is recorded in a log already being written
    (the console's). The session's :class:`LabController` does the lab's steps;
    ``switch_disk`` is needed only by a disk comparison. The session's clock dates the
    runner's own events and the samples of tools that print relative times, and its
    sleep waits on that clock: the timeline's parts and the waits for a freshly booted
    guest (a simulated lab has a clock of its own).
    """

    def __init__(
        self,
        session: LabSession,
        scenario: Scenario,
        *,
        repetitions: int | None = None,
        records: bool = False,
        guest: HostRunner | None = None,
        switch_disk: SwitchDisk | None = None,
        campaign: dict[str, Any] | None = None,
    ) -> None:
        if repetitions is not None and repetitions < 1:
            raise ValueError(f"repetitions must be at least 1, got {repetitions}")
        self.session = session
        self.lab = session.lab
        self.hosts = session.hosts
        self.bus = session.bus
        self.scenario = scenario
        self.repetitions = repetitions or scenario.repetitions
        self._records = records and session.log is not None
        self._guest = guest
        self._own_guest = guest is None
        self._switch_disk = switch_disk
        self._clock = session.clock
        self._sleep = session.sleep
        self._campaign = campaign
        self.result: RunResult | None = None
        """Set when :meth:`run` ends, also when it ends by a cancel."""

        self._events: list[Event] = []
        self._recording = False
        self._watched: set[str] = set()
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._log_broken = asyncio.Event()
        self._log_error: str | None = None
        self._finished_seen = 0
        self._outcomes: list[MigrationOutcome] = []
        self._console: LocalRunner | None = None
        self._launches: list[_Launch] = []
        self._early_end = asyncio.Event()
        self._early_reason = ""
        self._migrated = False
        self._interrupted_migration = False
        self._migration_failed = False
        self._booted = False
        self._boot_id: str | None = None
        self._started_at = self._clock()

    # -- what a lab cannot do ---------------------------------------------------------------

    def unsupported(self) -> str | None:
        """Why this runner cannot run the scenario on this lab at all (None: it can)."""
        problems = self.scenario.lab_problems(self.lab)
        if problems:
            return f"scenario {self.scenario.id}: " + "; ".join(problems)
        if self.scenario.compare_disks and self._switch_disk is None:
            return (
                f"scenario {self.scenario.id} compares the guest on a local disk with the "
                "guest on iSCSI, and this lab has no way yet to move the guest to a local "
                "disk (no switch_disk for the runner)"
            )
        return None

    @property
    def controller(self) -> LabController:
        return self.session.controller()

    @property
    def log_path(self) -> Path | None:
        """The session log this run begins and ends (None: it records into another's)."""
        return self.session.log_path if self._records else None

    # -- events ---------------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        self.bus.publish(event)

    def _note(self, text: str, level: Literal["info", "warning", "error"] = "info") -> None:
        self._publish(Note(text=text, level=level, t=self._clock()))

    def _on_event(self, event: Event) -> None:
        if not self._recording:
            return
        self._events.append(event)
        if isinstance(event, MigrationFinished):
            self._finished_seen += 1
        elif (
            isinstance(event, HostState)
            and event.host in self._watched
            and event.state in ("disconnected", "failed")
            and not self._lost.is_set()
        ):
            self._lost_reason = f"lost the connection to {event.host}: {event.reason or '?'}"
            self._lost.set()

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> RunResult:
        """Run the whole scenario; cancel the calling task to stop it (cleanly)."""
        if self._recording or self.result is not None:
            raise RuntimeError("an ExperimentRunner runs once")
        problem = self.unsupported()
        if problem is not None:
            raise RunAborted(problem)
        self._recording = True
        self._started_at = self._clock()
        status: RunStatus = "failed"
        error: str | None = None
        unsubscribe = self.bus.subscribe(self._on_event)  # for this run only
        try:
            await self._race_lost_hosts(self._body())
            status = "ok"
        except (asyncio.CancelledError, KeyboardInterrupt):
            status = "interrupted"
            raise
        except (RunAborted, *_ABORTING) as exc:
            error = str(exc)
        except BaseException as exc:  # a bug: still clean up and keep the log
            status = "crashed"
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            try:
                await _finish_despite_cancel(self._cleanup(status, error))
            finally:
                unsubscribe()
        assert self.result is not None
        return self.result

    async def _race_lost_hosts(self, body: Coroutine[Any, Any, None]) -> None:
        """Run ``body``; a lab host that disconnects meanwhile ends it (RunAborted), and so
        does a session log that can no longer be written (nothing would be recorded)."""
        task = asyncio.ensure_future(body)
        lost = asyncio.ensure_future(self._lost.wait())
        broken = asyncio.ensure_future(self._log_broken.wait())
        try:
            await asyncio.wait({task, lost, broken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            broken.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if task.cancelled() and self._log_broken.is_set():
            raise RunAborted(f"{self._log_error}; the run was stopped")
        if task.cancelled() and self._lost.is_set():
            raise RunAborted(self._lost_reason)
        task.result()

    async def _body(self) -> None:
        await self._connect()
        self._publish(
            ExperimentStarted(
                t=self._clock(),
                scenario=self.scenario.id,
                title=self.scenario.title,
                repetitions=self.repetitions,
                migrations=self.scenario.migrations,
                sequence=self.scenario.sequence,
                timeline=self.scenario.timeline.model_dump(),
            )
        )
        await self._set_up_lab()
        for number in range(1, self.repetitions + 1):
            self._publish(RepetitionStarted(number=number, of=self.repetitions, t=self._clock()))
            arms: list[str | None] = [None]
            if self.scenario.compare_disks:
                arms = [*self.scenario.compare_disks]
            for disk in arms:
                if disk is not None:
                    assert self._switch_disk is not None
                    await self._switch_disk(disk)
                    self._publish(DiskStarted(disk=disk, t=self._clock()))
                for stage in self._stages():
                    await self._stage(stage)

    # -- connecting and the log --------------------------------------------------------------

    def _lab_hosts(self) -> list[str]:
        """The lab hosts this run uses: storage, both hypervisor hosts, probe hosts."""
        names = [self.lab.storage.host, *self.lab.hypervisor.hosts]
        for entry in self.scenario.entries:
            where = self.scenario.host_of(entry, self.lab)
            if where not in (CONSOLE, "guest"):
                names.append(where)
        return list(dict.fromkeys(names))

    async def _open_hosts(self) -> list[str]:
        names = self._lab_hosts()
        errors = await self.session.connect(names)
        failed = [str(error) for error in errors.values() if error is not None]
        if failed:
            raise RunAborted("cannot reach " + "; ".join(failed))
        return names

    async def _connect(self) -> None:
        names = await self._open_hosts()
        self._watched = set(names)
        versions = await asyncio.gather(*(self.session.host_report(n) for n in names))
        reports = dict(zip(names, versions, strict=True))
        try:
            await self._open_log(reports)
        except SessionLogWriteError as exc:  # it names the file and the OS error
            self._log_error = str(exc)
            raise RunAborted(str(exc)) from None
        except OSError as exc:
            raise RunAborted(f"cannot write the session log {self.log_path}: {exc}") from None

    async def _open_log(self, hosts: dict[str, Any]) -> None:
        """Have the session begin its log (if this run records it): what happened before
        it existed is written first."""
        log = self.session.log
        if not self._records or log is None or log.opened:
            return
        await self.session.open_log(
            hosts, self._log_failed, scenario=self.scenario.id, campaign=self._campaign
        )

    def _log_failed(self, error: SessionLogWriteError) -> None:
        """The log cannot be written (disk full): stop the run now, cleanly."""
        self._log_error = str(error)
        self._log_broken.set()

    # -- preparing the lab -------------------------------------------------------------------

    def _in_guest(self) -> bool:
        return any(self.scenario.host_of(e, self.lab) == "guest" for e in self.scenario.entries)

    async def _set_up_lab(self) -> None:
        controller = self.controller
        prepared = await controller.prepare()
        if prepared.changed:
            self._note(f"storage prepared: {len(prepared.commands)} commands")
        placement = await controller.where()
        if placement.unreachable:
            host, why = next(iter(placement.unreachable.items()))
            raise RunAborted(f"cannot tell whether the guest runs on {host}: {why}")
        if len(placement.running_on) > 1:
            raise RunAborted(
                f"the guest runs on both {' and '.join(placement.running_on)}; resolve that first"
            )
        if not placement.running_on:
            host = controller.hv_hosts[0]
            self._note(f"booting {self.lab.guest.name} on {host}")
            await controller.boot(host)
            self._booted = True
        if self._in_guest():
            if self._guest is None:
                self._guest = await self._open_guest()
            self._boot_id = await self._read_boot_id(self._guest)
        elif self._booted:
            await self._wait_for_ping()

    async def _open_guest(self) -> HostRunner:
        """SSH into the guest; a guest booted just now gets time to come up."""
        deadline = self._clock() + (GUEST_WAIT_S if self._booted else 0.0)
        while True:
            try:
                return await self.hosts.open_guest()
            except TransportError as exc:
                if self._clock() >= deadline:
                    raise RunAborted(f"cannot reach the guest over SSH: {exc}") from None
            await self._sleep(GUEST_RETRY_S)

    async def _read_boot_id(self, guest: HostRunner) -> str | None:
        """The guest's boot id (None: it has none to tell, as a guest that is not Linux)."""
        result = await guest.run(["cat", GUEST_BOOT_ID], timeout=GUEST_CHECK_S)
        if result.failure is not None:
            raise RunAborted(
                f"the guest {self.lab.guest.name} did not answer `cat {GUEST_BOOT_ID}` over "
                f"SSH ({result.failure})"
            )
        text = result.stdout.strip()
        return text if result.ok and text and "\n" not in text else None

    async def _check_guest_survived(self) -> None:
        """After a stage's migrations: the guest still answers, and has not rebooted."""
        if self._guest is None or not self._in_guest():
            return
        name = self.lab.guest.name
        try:
            now = await self._read_boot_id(self._guest)
        except RunAborted as exc:
            raise RunAborted(
                f"{exc} after its migration: it may have crashed; its probes' last samples "
                "are from before"
            ) from None
        if self._boot_id is not None and now != self._boot_id:
            raise RunAborted(
                f"the guest {name} rebooted after its migration (its boot id is "
                f"{now or 'unreadable'}, not {self._boot_id}): what its probes measured "
                "after the reboot is not the migrated guest's"
            )

    async def _wait_for_ping(self) -> None:
        """A freshly booted guest measured only from outside: wait until it answers the
        first probe that can tell (ping: one echo reply)."""
        address = self.lab.guest.address
        asking = ((e, e.probe.answer_argv(address)) for e in self.scenario.entries)
        found = next(((e, argv) for e, argv in asking if argv is not None), None)
        if found is None:
            return
        entry, argv = found
        runner, _ = self._runner_of(entry)
        deadline = self._clock() + GUEST_WAIT_S
        while not (await runner.run(argv, timeout=10)).ok:
            if self._clock() >= deadline:
                raise RunAborted(
                    f"the guest {self.lab.guest.name} ({address}) does not answer "
                    f"{entry.kind} from {runner.name} {GUEST_WAIT_S:g} s after it was booted"
                )
            await self._sleep(GUEST_RETRY_S)

    # -- the timeline ------------------------------------------------------------------------

    def _stages(self) -> list[list[Entry]]:
        entries = self.scenario.entries
        if self.scenario.sequence == "one-at-a-time":
            return [[entry] for entry in entries]
        return [list(entries)]

    def _phase(self, name: str) -> None:
        self._publish(Phase(name=name, t=self._clock()))

    async def _hold(self, seconds: float) -> None:
        """Let the timeline run ``seconds``; a probe that ends early meanwhile aborts."""
        if seconds <= 0:
            return
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        ended = asyncio.ensure_future(self._early_end.wait())
        try:
            await asyncio.wait({sleeping, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (sleeping, ended):
                waiting.cancel()
            await asyncio.wait({sleeping, ended})
        if self._early_end.is_set():
            raise RunAborted(self._early_reason)
        if sleeping.cancelled():  # not by us: the lab's clock itself stopped
            raise RunAborted("the lab's clock stopped during the run")
        sleeping.result()

    async def _stage(self, entries: list[Entry]) -> None:
        timeline = self.scenario.timeline
        self._migrated = False
        self._early_end.clear()
        launches: list[_Launch] = []
        try:
            if timeline.warmup_s > 0:
                self._phase("warmup")
            for entry in entries:
                launch = await self._launch(entry)
                launches.append(launch)
                self._start(launch)
            await self._hold(timeline.warmup_s)
            self._phase("baseline")
            await self._hold(timeline.baseline_s)
            for leg in range(1, self.scenario.migrations + 1):
                if leg > 1 and timeline.between_s > 0:
                    self._phase("between")
                    await self._hold(timeline.between_s)
                await self._migrate(leg)
            if self.scenario.migrations and timeline.after_s > 0:
                self._phase("after")
                await self._hold(timeline.after_s)
            if self._migrated:
                await self._check_guest_survived()
        finally:
            await _finish_despite_cancel(self._stop(launches))

    async def _migrate(self, leg: int) -> None:
        controller = self.controller
        placement = await controller.where()
        source = placement.host
        if source is None:
            if placement.unreachable and len(placement.running_on) < 2:
                # Not "runs on no host": a host that did not answer may run it.
                raise _MigrationFailed(
                    "cannot migrate: cannot tell where the guest runs; could not ask "
                    f"{placement.unasked()}"
                )
            where = ", ".join(placement.running_on) or "no host"
            raise _MigrationFailed(f"cannot migrate: the guest runs on {where}, not on one host")
        dest = controller.other(source)
        seen = self._finished_seen
        self._phase("migrating")
        self._migrated = True
        try:
            outcome = await controller.migrate(dest)
        except asyncio.CancelledError:
            self._interrupted_migration = True
            if self._finished_seen == seen:
                why = self._lost_reason if self._lost.is_set() else "the run was cancelled"
                error = f"interrupted: {why} during the migration"
                self._finished(source, dest, MigrationOutcome(False, error=error))
            raise
        except _ABORTING as exc:
            outcome = MigrationOutcome(False, error=str(exc))
        if self._finished_seen == seen:  # the driver said nothing (a refused pre-check)
            self._finished(source, dest, outcome)
        self._outcomes.append(outcome)
        if not outcome.ok:
            self._migration_failed = True
            why = outcome.error or "no reason given"
            raise _MigrationFailed(f"migration {leg} from {source} to {dest} failed: {why}")

    def _finished(self, source: str, dest: str, outcome: MigrationOutcome) -> None:
        self._publish(
            MigrationFinished(
                t=self._clock(),
                domain=self.lab.guest.name,
                source=source,
                dest=dest,
                ok=outcome.ok,
                total_time_ms=outcome.total_time_ms,
                downtime_ms=outcome.downtime_ms,
                transferred_bytes=outcome.transferred_bytes,
                iterations=outcome.iterations,
                error=outcome.error,
            )
        )

    # -- probes and workloads ----------------------------------------------------------------

    def _runner_of(self, entry: Entry) -> tuple[HostRunner, str]:
        """The runner ``entry`` runs on, and the host name its samples carry."""
        where = self.scenario.host_of(entry, self.lab)
        if where == "guest":
            if self._guest is None:
                raise RunAborted("no connection to the guest")
            return self._guest, self.lab.guest.name
        if where == CONSOLE:
            if self._console is None:
                self._console = LocalRunner(CONSOLE, self.bus.publish)
            return self._console, CONSOLE
        return self.hosts[where], where

    def _planned_s(self, per_migration_s: float) -> float:
        """A stage's length, each migration counted as ``per_migration_s``."""
        t = self.scenario.timeline
        legs = self.scenario.migrations
        planned = t.warmup_s + t.baseline_s + max(0, legs - 1) * t.between_s
        planned += t.after_s if legs else 0.0
        return planned + legs * per_migration_s

    def _limit_s(self) -> int:
        """How long a tool may run at most: the stage's planned length and generous slack."""
        return math.ceil(self._planned_s(MIGRATION_ALLOWANCE_S) + LIMIT_MARGIN_S)

    def _run_context(self, scratch: str | None = None, tree: str | None = None) -> RunContext:
        """What this run tells a probe's command (a plan's: placeholders for what only a
        launch makes: the scratch directory, the tree found)."""
        guest = self.lab.guest
        guest_mbit = guest.memory_mb * 8 * 1.048576
        run = RunContext(
            guest_address=guest.address,
            guest_memory_mb=guest.memory_mb,
            limit_s=self._limit_s(),
            warmup_s=self.scenario.timeline.warmup_s,
            expected_s=self._planned_s(guest_mbit / self.lab.migrate_bandwidth_mbit),
            tree=tree,
        )
        return run if scratch is None else dataclasses.replace(run, scratch=scratch)

    def _command(self, entry: Entry, run: RunContext | None = None) -> list[str]:
        """The argv of a probe or workload, as its probe builds it for this run."""
        return entry.probe.argv(entry.options, run or self._run_context())

    async def _launch(self, entry: Entry) -> _Launch:
        """Ready ``entry`` to start: its runner, argv, parser and scratch directory."""
        runner, label = self._runner_of(entry)
        probe = entry.probe
        name = probe.scratch_dir(entry.options)
        scratch = await self._scratch(runner, name) if name is not None else None
        try:
            tree = await self._find_tree(probe.trees(entry.options), runner)
            run = self._run_context(scratch, tree)
            argv = self._command(entry, run)
        except BaseException:
            if scratch is not None:
                await self._remove_scratch(runner, scratch)
            raise
        for text in probe.notes(entry.options, run):
            self._note(text, "warning")
        parser = probe.new_parser(label, self._clock)
        return _Launch(entry, runner, label, argv, parser, scratch)

    def _start(self, launch: _Launch) -> None:
        def on_line(stream: str, line: str) -> None:
            if stream == "stdout":
                for sample in launch.parser.feed(line):
                    self._publish(sample)

        launch.task = asyncio.ensure_future(
            launch.runner.run(launch.argv, timeout=None, on_line=on_line, long_running=True)
        )
        launch.task.add_done_callback(lambda _: self._ended(launch))
        self._launches.append(launch)

    def _ended(self, launch: _Launch) -> None:
        """A probe or workload's command ended: expected when stopping, else reported."""
        task = launch.task
        assert task is not None
        for sample in launch.parser.finish():
            self._publish(sample)
        if launch.stopping or task.cancelled():
            return
        error = task.exception()
        if error is not None:
            why = f"{type(error).__name__}: {error}"
        else:
            result = task.result()
            if result.failure is not None:
                why = result.failure
            else:
                why = f"exit status {result.exit_status}"
            stderr = result.stderr.strip()[-500:]
            if stderr:
                why += f": {stderr}"
        text = f"{launch.name} ended before the run did: `{show_argv(launch.argv)}` ({why})"
        if self._migrated:
            self._note(text, "warning")
        elif not self._early_end.is_set():
            self._early_reason = text
            self._early_end.set()

    async def _stop(self, launches: list[_Launch]) -> None:
        """Stop these probes and workloads (their process trees), then their scratch dirs."""
        tasks: list[asyncio.Task[CommandResult]] = []
        for launch in launches:
            launch.stopping = True
            if launch.task is not None:
                launch.task.cancel()
                tasks.append(launch.task)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            for launch in launches:
                if launch.task in pending:
                    self._note(
                        f"could not confirm that {launch.name} stopped within "
                        f"{STOP_TIMEOUT_S:g} s (is {launch.runner.name} reachable?)",
                        "warning",
                    )
        for launch in launches:
            if launch.scratch is not None:
                await self._remove_scratch(launch.runner, launch.scratch)
                launch.scratch = None
            if launch in self._launches and (launch.task is None or launch.task.done()):
                self._launches.remove(launch)

    async def _scratch(self, runner: HostRunner, what: str) -> str:
        """A fresh directory in the home of ``runner``'s user (on the disk under test)."""
        result = await runner.run(
            ["sh", "-c", 'cd && mktemp -d "$PWD/miglab-$1.XXXXXX"', "miglab-scratch", what]
        )
        path = result.stdout.strip()
        if not result.ok or not path.startswith("/") or f"/miglab-{what}." not in path:
            raise RunAborted(f"cannot make a scratch directory: {CommandFailed(result)}")
        return path

    async def _remove_scratch(self, runner: HostRunner, path: str) -> None:
        with contextlib.suppress(*_ABORTING):
            result = await runner.run(["rm", "-rf", "--", path], timeout=CLEANUP_COMMAND_S)
            if not result.ok:
                self._note(f"could not remove {path} on {runner.name}: {CommandFailed(result)}")

    async def _find_tree(self, trees: list[str], runner: HostRunner) -> str | None:
        """The first of ``trees`` that ``runner``'s host has (None: none asked for)."""
        if not trees:
            return None
        for directory in trees:
            found = await runner.run(["sh", "-c", _IS_DIR, "miglab-isdir", directory])
            if found.ok and found.stdout.strip() == "yes":
                return directory
        raise RunAborted(f"{runner.name}: no source tree at {' or '.join(trees)}")

    # -- the end -----------------------------------------------------------------------------

    async def _cleanup(self, status: RunStatus, error: str | None) -> None:
        """Stop what still runs, say where the guest is, close the guest and the log."""
        if self._launches:
            await self._stop(list(self._launches))
        if self._interrupted_migration:
            with contextlib.suppress(*_ABORTING, TimeoutError):
                placement = await wait_for(self.controller.where(), CLEANUP_COMMAND_S)
                where = placement.host or "no single host"
                self._note(f"after the interrupted migration the guest runs on {where}", "warning")
        if error is not None and not self._migration_failed:  # that one has its event
            self._note(error, "error")
        self._publish(
            ExperimentFinished(
                t=self._clock(), scenario=self.scenario.id, status=status, error=error
            )
        )
        closing: list[HostRunner] = [self._console] if self._console is not None else []
        if self._own_guest and self._guest is not None:
            closing.append(self._guest)
        for runner in closing:  # a connection to a host that is gone must not hold us up
            with contextlib.suppress(TimeoutError):
                await wait_for(runner.close(), CLEANUP_COMMAND_S)
        # The run ended before its log began: keep what it saw.
        with contextlib.suppress(OSError):
            await self._open_log({})
        self._recording = False
        log = self.session.log
        written = self._records and log is not None and log.writing
        if written and log is not None:
            log_error = await self.session.end_log(status)
            if log_error is not None:  # also when only the end could not be written
                self._log_error = str(log_error)
                if status == "ok":
                    status, error = "failed", self._log_error
        self.result = RunResult(
            status=status,
            log_path=self.log_path if written else None,
            analysis=analyze(self._events, t0=self._started_at),
            migrations=tuple(self._outcomes),
            error=error,
            log_error=self._log_error,
        )

    # -- the dry run -------------------------------------------------------------------------

    async def plan(self) -> RunPlan:
        """The commands a run would send, per host; runs only commands that look."""
        problem = self.unsupported()
        if problem is not None:
            raise RunAborted(problem)
        await self._open_hosts()
        controller = self.controller
        steps: list[PlanStep] = []
        prepared = await controller.prepare(dry_run=True)
        steps.append(
            PlanStep(
                "Prepare the storage (export, log both hosts in)",
                tuple(prepared.commands),
                "" if prepared.commands else "nothing to do: already exported and logged in",
            )
        )
        placement = await controller.where()
        if placement.unreachable:
            host, why = next(iter(placement.unreachable.items()))
            raise RunAborted(f"cannot tell whether the guest runs on {host}: {why}")
        source = placement.host
        if source is None:
            source = controller.hv_hosts[0]
            # Not controller.boot: its pre-check wants the disk session a dry run only plans.
            booted = await controller.hypervisor.create(source, dry_run=True)
            steps.append(
                PlanStep(
                    f"Boot the guest on {source}",
                    tuple(booted.commands),
                    "after checking its memory and its session to the disk",
                )
            )
        else:
            steps.append(PlanStep(f"The guest runs on {source}", note="nothing to boot"))
        for number, stage in enumerate(self._stages(), start=1):
            commands = [HostCommand(self._planned_host(e), tuple(self._command(e))) for e in stage]
            title = "Probes and workloads"
            if len(self._stages()) > 1:
                title += f", stage {number} of {len(self._stages())}"
            steps.append(
                PlanStep(
                    title,
                    tuple(commands),
                    "started at the warm-up, stopped at the end of each repetition",
                )
            )
        pinging = self.session.pinger.command()
        if pinging is not None and not self.scenario.pings_from_storage(self.lab):
            storage = self.lab.storage.host
            steps.append(
                PlanStep(
                    "The session's own ping of the guest",
                    (HostCommand(storage, tuple(pinging)),),
                    "while the guest runs: every migration's unreachable time",
                )
            )
        host = source
        for leg in range(1, self.scenario.migrations + 1):
            dest = controller.other(host)
            legs = await controller.hypervisor.migrate_plan(host, dest)
            steps.append(PlanStep(f"Migration {leg}: {host} -> {dest}", tuple(legs)))
            host = dest
        return RunPlan(self.scenario, self.repetitions, tuple(steps))

    def _planned_host(self, entry: Entry) -> str:
        where = self.scenario.host_of(entry, self.lab)
        return self.lab.guest.name if where == "guest" else where


# Answers, with exit status 0 either way (a "no" is no failure): is $1 a directory?
_IS_DIR = 'if [ -d "$1" ]; then echo yes; else echo no; fi'
