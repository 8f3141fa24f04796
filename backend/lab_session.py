"""The one place a lab session is assembled: the console and ``miglab run`` use it.

A :class:`LabSession` owns, for one lab:

* the event bus every layer publishes on, and the hosts (:class:`Hosts`, their
  runners publishing on that bus): connected at once, a host that is down reported
  with why (:meth:`connect`), each asked for its kernel and tools (:meth:`host_reports`);
* the clock: wall time, or a simulated lab's (then events are stamped with it while
  the session is open, the runner waits on it, and the log's header says how the lab
  was simulated);
* the session's own ping of the guest from the storage node
  (:class:`~backend.guest_pinger.GuestPinger`), while the guest runs, through every
  migration and every scenario that does not ping it from there itself;
* the migration meter (:class:`~backend.experiments.migration_meter.MigrationMeter`):
  every migration, by a key or in a scenario, measured once the guest answers ping
  again (``migration.measured``), the last one at the latest when the log ends;
* the session log (:class:`~backend.session.SessionRecorder`): every event the bus
  carries from the session's start, the header (lab, simulated, hosts' versions,
  the scenario and campaign of a run) written when the hosts have answered, and the
  events published before it first; fsync at phases (the writer's); the end status at
  :meth:`close`; a log that breaks (disk full) calls back whoever records into it;
* the drivers (target, initiator, hypervisor: the factories in backend/drivers/) and
  the :class:`~backend.lab.LabController` on them, which holds every safety rule;
* the experiments: :meth:`experiment` builds an
  :class:`~backend.experiments.runner.ExperimentRunner` with what it needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.check import probe_host
from backend.config import LabConfig
from backend.drivers.base import HypervisorDriver, InitiatorDriver, TargetDriver
from backend.drivers.factories import hypervisor_driver, initiator_driver
from backend.events import Event, EventBus, set_clock
from backend.experiments.migration_meter import MigrationMeter
from backend.experiments.runner import CONSOLE, ExperimentRunner, Sleep
from backend.experiments.scenarios import Scenario
from backend.guest_pinger import GuestPinger
from backend.lab import LabController
from backend.session import EndStatus, SessionLogWriteError, SessionRecorder, make_header
from backend.transport.base import HostRunner, TransportError
from backend.transport.hosts import Hosts

if TYPE_CHECKING:
    from backend.sim.lab import SimulatedLab

__all__ = ["LabSession"]


class LabSession:
    """Bus, hosts, clock, session log, drivers and LabController of one session on ``lab``.

    ``sim``: the simulated lab it runs on (its clock, ``switch_disk``, the header's
    ``simulation``); ``simulated``: the lab is a simulated one (the header says so).
    ``log``: where the session log goes (None: no log, as in a dry run); ``rename``
    names it anew when that file exists. ``sim_hypervisor``: with ``sim``, the
    simulated lab's hypervisor driver (its waits on the simulated clock), else the
    lab's own from the factory (the console's so far).
    """

    def __init__(
        self,
        lab: LabConfig,
        *,
        simulated: bool = False,
        sim: SimulatedLab | None = None,
        log: Path | None = None,
        rename: Callable[[int], Path] | None = None,
        sim_hypervisor: bool = True,
    ) -> None:
        self.lab = lab
        self.sim = sim
        self.simulated = simulated or sim is not None
        self.clock: Callable[[], float] = sim.clock if sim is not None else time.time
        self.sleep: Sleep = sim.runtime.sleep if sim is not None else asyncio.sleep
        self.bus = EventBus()
        self.hosts = Hosts(lab, self.bus.publish)
        self.log = SessionRecorder(log, rename) if log is not None else None
        self._sim_hypervisor = sim_hypervisor
        self._hypervisor: HypervisorDriver | None = None
        self._initiator: InitiatorDriver | None = None
        self._controller: LabController | None = None
        self._clock_set = False
        self._unsubscribe = self.bus.subscribe(self._record) if self.log is not None else None
        self.meter = MigrationMeter(
            self.bus.publish, memory_mb=lab.guest.memory_mb, link_mbit=lab.lab.link_mbit
        )
        self.pinger = GuestPinger(
            lab, self.hosts, self.bus.publish, clock=self.clock, sleep=self.sleep
        )
        self._unsubscribe_listeners = [
            self.bus.subscribe(self.meter.feed),
            self.bus.subscribe(self.pinger.seen),
        ]

    # -- the bus and the clock -------------------------------------------------------------

    def publish(self, event: Event) -> None:
        self.bus.publish(event)

    def _record(self, event: Event) -> None:
        assert self.log is not None
        self.log.write(event)

    def use_clock(self) -> None:
        """Stamp every event with the session's clock (a simulated lab's) until close."""
        if self.sim is not None and not self._clock_set:
            set_clock(self.sim.clock)  # one clock: the simulated tools print simulated times
            self._clock_set = True

    @property
    def simulation(self) -> dict[str, Any] | None:
        """What the log's header says about the simulated lab (None on a real one)."""
        return self.sim.header()["simulation"] if self.sim is not None else None

    # -- the hosts -------------------------------------------------------------------------

    async def connect(self, names: Iterable[str] | None = None) -> dict[str, TransportError | None]:
        """Connect the named hosts (all by default) that are not yet; each one's error."""
        wanted = list(names) if names is not None else list(self.lab.hosts)
        missing = [name for name in wanted if name not in self.hosts]
        return await self.hosts.open(missing) if missing else {}

    async def host_report(self, name: str) -> dict[str, Any]:
        """Host ``name``'s kernel and tools, as the header's ``hosts`` has them (it raises
        what asking raised)."""
        runner = self.hosts[name]
        report = await probe_host(runner, getattr(runner, "rtt_ms", None))
        return dataclasses.asdict(report)

    async def host_reports(self, errors: Mapping[str, TransportError | None]) -> dict[str, Any]:
        """Each host's report, asked of all at once; one that could not be reached or
        asked is in it with why."""

        async def one(name: str) -> dict[str, Any]:
            error = errors.get(name)
            if error is not None:
                return {"reachable": False, "error": error.message}
            return await self.host_report(name)

        names = list(errors)
        found = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        return {
            name: report
            if isinstance(report, dict)
            else {"reachable": False, "error": f"{type(report).__name__}: {report}"}
            for name, report in zip(names, found, strict=True)
        }

    # -- the session log -------------------------------------------------------------------

    @property
    def log_path(self) -> Path | None:
        return self.log.path if self.log is not None else None

    async def open_log(
        self,
        hosts: dict[str, Any],
        on_failure: Callable[[SessionLogWriteError], None],
        **extra: Any,
    ) -> None:
        """Begin the session log: the header (``extra``: the scenario, the campaign), then
        every event so far. Raises SessionLogWriteError or OSError if it cannot begin."""
        if self.log is None:
            return
        header = make_header(
            lab=self.lab.model_dump(mode="json"),
            lab_file=self.lab.source_file,
            lab_sha256=self.lab.digest,
            simulated=self.simulated,
            hosts=hosts,
            simulation=self.simulation,
            **extra,
        )
        await self.log.open(header, on_failure)

    async def end_log(self, status: EndStatus) -> SessionLogWriteError | None:
        """End the session log with ``status``: the session's ping stopped first (its end is
        in the log), a migration still waiting for ping measured (with what there is). Why
        the log could not be written, if so."""
        await self.pinger.close()
        self.meter.flush()
        return await self.log.close(status) if self.log is not None else None

    # -- the drivers -----------------------------------------------------------------------

    def hypervisor(self) -> HypervisorDriver:
        if self._hypervisor is None:
            if self.sim is not None and self._sim_hypervisor:
                self._hypervisor = self.sim.hypervisor_driver(self.hosts, self.publish)
            else:
                self._hypervisor = hypervisor_driver(self.lab, self.hosts, self.publish)
        return self._hypervisor

    def initiator(self) -> InitiatorDriver:
        if self._initiator is None:
            self._initiator = initiator_driver(self.lab, self.hosts, self.publish)
        return self._initiator

    def target(self) -> TargetDriver:
        """The target driver, once the storage host is connected (else its TransportError)."""
        return self.controller().target

    def controller(self) -> LabController:
        if self._controller is None:
            self._controller = LabController(
                self.lab,
                self.hosts,
                self.publish,
                initiator=self.initiator(),
                hypervisor=self.hypervisor(),
            )
        return self._controller

    # -- experiments -----------------------------------------------------------------------

    def runnable(self, offered: Mapping[str, Scenario], quick: bool) -> dict[str, Scenario]:
        """The scenarios offered that this session's lab can run (quick when asked)."""
        found: dict[str, Scenario] = {}
        for scenario in offered.values():
            if scenario.lab_problems(self.lab):
                continue
            if scenario.compare_disks and self.sim is None:
                continue  # only the simulated lab can move the guest to a local disk yet
            if self.simulated and any(e.place == CONSOLE for e in scenario.entries):
                continue  # this machine is no simulated host: its ping reaches nothing there
            found[scenario.id] = scenario.quick() if quick else scenario
        return found

    def experiment(
        self,
        scenario: Scenario,
        *,
        repetitions: int | None = None,
        records: bool = False,
        guest: HostRunner | None = None,
        campaign: dict[str, Any] | None = None,
    ) -> ExperimentRunner:
        """A runner of ``scenario`` on this session. ``records``: the run begins and ends
        the session log (``miglab run``); without, it records into a log that is already
        being written (the console's)."""
        sim = self.sim
        self.pinger.next_run(pings=scenario.pings_from_storage(self.lab), ends_session=records)
        return ExperimentRunner(
            self,
            scenario,
            repetitions=repetitions,
            records=records,
            guest=guest,
            switch_disk=sim.switch_disk if sim is not None else None,
            campaign=campaign,
        )

    # -- the end ---------------------------------------------------------------------------

    async def close(self, status: EndStatus | None = None) -> SessionLogWriteError | None:
        """Close the hosts, then end the log with ``status`` (if it is still being written:
        None leaves that to whoever began it), and stop the session's own listeners (the
        log's, the migration meter's, the ping's). Why the log could not be written, if so."""
        await self.pinger.close()  # before its host's connection goes
        await self.hosts.close()
        error = None
        if status is not None:
            error = await self.end_log(status)
        for unsubscribe in self._unsubscribe_listeners:
            unsubscribe()
        self._unsubscribe_listeners.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._clock_set:
            set_clock(None)
            self._clock_set = False
        return error
