"""The console's backend on a real (or simulated) lab: LabController and the runner behind keys.

:func:`make_backend` builds it; the console drives it through the
:class:`~tui.backend_api.ConsoleBackend` protocol:

* ``start()`` opens every host at once (one that is down shows as failed and is tried
  again, with a growing pause, by the poller; one that drops later reconnects by
  itself, which the transport does), asks each host for its versions, and starts the
  session log ``sessions/console-YYYYmmdd-HHMMSS.jsonl``: a header with the lab, the
  simulated flag and the hosts' versions, then every event the bus carries (events
  from before the log existed are written first, in order).
* A poller looks at the lab every few seconds while no action runs: the driver's
  ``domains()`` and ``info()`` on both hypervisor hosts, the initiator's
  ``sessions()``, the target's ``status()``. What changed since the last look is
  published as the events the panes draw (``domain.state`` by the driver itself,
  ``host.resources``, ``initiator.session``, ``storage.exported`` /
  ``storage.unexported``). An action first lets a look in flight finish (briefly: it
  only looks), and no look starts while an action runs.
* Actions map onto :class:`~backend.lab.LabController`, its drivers and the
  :class:`~backend.experiments.runner.ExperimentRunner`; each raises on failure with
  the drivers' own message (host, command, stderr). ``plan_*`` return the exact
  commands from the drivers' dry runs. A migration is stopped with the driver's
  cancel (the guest stays on the source); anything else by cancelling its task (the
  runner's cleanup stops every probe and workload). A stopped action raises
  ``CancelledError``, which the console shows as "stopped".
* ``plan_cancel`` lists the commands a cancel stops, as pseudo-commands
  ``stop ARGV`` (the commands the action has running: the transport ends each one's
  process tree) and, for QEMU, the QMP ``migrate_cancel`` it sends.
* ``close()`` stops what still runs (cleanly), closes the hosts, then the session log
  and the bus. The log's end marker says how the session ended: "interrupted" if
  closing stopped an action (or the console said so, ``set_end_status``), "crashed" if
  the console said it crashed, else how the last action ended ("ok" or "failed").
* A session log that can no longer be written (disk full) stops the running action
  (as ``cancel`` does), says so in an error note, and every later action is refused.

With a :class:`~backend.sim.lab.SimulatedLab` (``sim=``) the backend uses its clock for
everything: events are stamped with it (``backend.events.set_clock`` while the backend
is open), the runner waits on it, and the session log's header says how the lab was
simulated. The simulated lab itself belongs to the caller (``miglab demo`` starts and
stops it around the console).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from backend.check import probe_host
from backend.config import LabConfig
from backend.drivers.base import (
    ALIVE,
    DriverError,
    HostCommand,
    HypervisorDriver,
    InitiatorDriver,
    Refused,
    TargetDriver,
)
from backend.drivers.factories import hypervisor_driver, initiator_driver, target_driver
from backend.drivers.hv_qemu import QemuDriver
from backend.events import (
    CommandFinished,
    CommandStarted,
    Event,
    EventBus,
    HostResources,
    InitiatorSession,
    Note,
    StorageExported,
    StorageUnexported,
    set_clock,
)
from backend.experiments.runner import CONSOLE, ExperimentRunner, RunAborted
from backend.experiments.scenarios import Scenario, builtin_scenarios, describe_timeline
from backend.lab import LabController
from backend.session import EndStatus, SessionLogWriteError, SessionLogWriter, make_header
from backend.transport.base import CommandFailed, TransportError
from backend.transport.hosts import Hosts
from tui.backend_api import ConsoleBackend, EventCallback, LabLayout, ReadOnlyActions, ScenarioInfo

if TYPE_CHECKING:
    from backend.sim.lab import SimulatedLab

__all__ = ["DEFAULT_LOG_DIR", "LiveBackend", "ReadOnlyLiveBackend", "make_backend"]

DEFAULT_LOG_DIR = Path("sessions")
POLL_S = 5.0
"""Seconds between two looks at the lab while nothing runs."""
POLL_TIMEOUT_S = 30.0
"""A look that takes longer is given up (its commands are stopped) and tried next time."""
RETRY_FIRST_S, RETRY_MAX_S = 5.0, 60.0
"""A host that could not be reached is tried again after 5 s, 10 s, 20 s ... at most 60 s."""
MIGRATION_STOP_S = 30.0
"""After the driver's cancel, how long the migration may take to end before its task is."""
CLOSE_WAIT_S = 60.0
"""On close, how long a stopped action's cleanup may take."""
POLL_YIELD_S = 2.0
"""An action (or close) lets a look in flight finish this long before it stops it."""

ActionKind = Literal["prepare", "boot", "migrate", "scenario", "guest", "storage"]
T = TypeVar("T")

# Errors an operation reports to the user as they are (they name host, command, stderr).
_EXPECTED = (DriverError, CommandFailed, TransportError, RunAborted)


@dataclasses.dataclass
class _Action:
    """One host-changing action in progress."""

    label: str
    kind: ActionKind
    first_command: int
    """The sequence number of the first command it may have started (see _track)."""
    task: asyncio.Future[Any] | None = None
    stop_requested: bool = False

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for it to end; whether it did."""
        if self.task is None:
            return True
        done, _ = await asyncio.wait({self.task}, timeout=timeout)
        return bool(done)

    def stop(self) -> None:
        self.stop_requested = True
        if self.task is not None:
            self.task.cancel()


def _log_name(now: float, attempt: int) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"console-{stamp}.jsonl" if attempt == 0 else f"console-{stamp}-{attempt + 1}.jsonl"


def scenario_info(scenario: Scenario) -> ScenarioInfo:
    """How the run picker shows a scenario: its title, the study's test, its timeline."""
    parts = []
    if scenario.study_test:
        parts.append(f"the study's {scenario.study_test}")
    parts.append(describe_timeline(scenario.timeline, scenario.migrations))
    return ScenarioInfo(scenario.id, scenario.title, " · ".join(parts))


class LiveBackend:
    """A :class:`~tui.backend_api.ConsoleBackend` on a lab reached over SSH (or locally)."""

    def __init__(
        self,
        lab: LabConfig,
        *,
        simulated: bool = False,
        sim: SimulatedLab | None = None,
        log_dir: Path = DEFAULT_LOG_DIR,
        log_path: Path | None = None,
        quick: bool = False,
        scenarios: Mapping[str, Scenario] | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self._sim = sim
        self._lab = lab
        self._simulated = simulated or sim is not None
        self._clock: Callable[[], float] = sim.clock if sim is not None else time.time
        self._start_t = self._clock()
        self._log_fixed = log_path is not None
        self._log_wall = time.time()  # names the log: the simulated clock does not name files
        self._log_path = (
            log_path if log_path is not None else log_dir / _log_name(self._log_wall, 0)
        )
        self._log_failed = False
        self._log_error: str | None = None  # why the log stopped being written, if it did
        self._last_outcome: EndStatus = "ok"  # how the last action ended
        self._end_status: EndStatus | None = None  # how the console ended, when it said
        self._log_stop: asyncio.Task[None] | None = None
        self._runnable = self._runnable_scenarios(
            scenarios if scenarios is not None else builtin_scenarios(), quick
        )
        self._poll_s = poll_s
        self._layout = LabLayout.from_config(self._lab)
        self._bus = EventBus()
        self._hosts = Hosts(self._lab, self._bus.publish)
        self._writer: SessionLogWriter | None = None
        self._early: list[Event] | None = []  # events before the log exists
        self._running_commands: dict[int, tuple[int, HostCommand]] = {}  # id -> (seq, cmd)
        self._commands_seen = 0
        self._seen: dict[tuple[str, str], object] = {}  # what the panes were last told
        self._poll_notes: dict[str, str] = {}  # what went wrong on the last look, per part
        self._retry_at: dict[str, tuple[float, float]] = {}  # host -> (when, pause)
        self._hypervisor: HypervisorDriver | None = None
        self._initiator: InitiatorDriver | None = None
        self._target: TargetDriver | None = None
        self._controller: LabController | None = None
        self._actions: list[_Action] = []
        self._poller: asyncio.Task[None] | None = None
        self._poll: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._clock_set = False
        self._started = False
        self._closed = False
        # Dropped at close: the console's view and the log listen as long as the backend.
        self._subscriptions = [self._bus.subscribe(self._track), self._bus.subscribe(self._to_log)]

    # -- what the console shows ------------------------------------------------------------

    @property
    def layout(self) -> LabLayout:
        return self._layout

    @property
    def simulated(self) -> bool:
        return self._simulated

    @property
    def readonly(self) -> bool:
        return False

    @property
    def session_log(self) -> Path | None:
        return None if self._log_failed else self._log_path

    @property
    def session_start(self) -> float:
        return self._start_t

    @property
    def lab(self) -> LabConfig:
        """The lab this backend connects to."""
        return self._lab

    def clock(self) -> float:
        return self._clock()

    def subscribe(self, callback: EventCallback) -> None:
        self._subscriptions.append(self._bus.subscribe(callback))

    # -- the bus's own subscribers ---------------------------------------------------------

    def _to_log(self, event: Event) -> None:
        if self._writer is not None:
            self._writer.write(event)
        elif self._early is not None:
            self._early.append(event)

    def _track(self, event: Event) -> None:
        """Keep what the poller compares with, and the commands that are running."""
        if isinstance(event, CommandStarted):
            command = HostCommand(event.host, tuple(event.argv))
            self._running_commands[event.cmd_id] = (self._commands_seen, command)
            self._commands_seen += 1
        elif isinstance(event, CommandFinished):
            self._running_commands.pop(event.cmd_id, None)
        elif isinstance(event, StorageExported):
            self._seen[("storage", event.iqn)] = True
        elif isinstance(event, StorageUnexported):
            self._seen[("storage", event.iqn)] = False
        elif isinstance(event, InitiatorSession):
            self._seen[("session", event.host)] = event.state
        elif isinstance(event, HostResources):
            self._seen[("resources", event.host)] = (event.free_memory_mb, event.total_memory_mb)

    def _note(self, text: str, level: Literal["info", "warning", "error"] = "info") -> None:
        self._bus.publish(Note(text=text, level=level))

    # -- starting and closing --------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self._sim is not None:
            set_clock(self._sim.clock)  # one clock: the simulated tools print simulated times
            self._clock_set = True
        errors = await self._hosts.open()
        for name, error in errors.items():
            if error is not None:
                self._retry_at[name] = (time.monotonic() + RETRY_FIRST_S, RETRY_FIRST_S)
        reports = await self._host_reports(errors)
        self._poller = asyncio.get_running_loop().create_task(self._poll_loop(), name="poller")
        try:
            await self._open_log(reports)
        except OSError as exc:  # the console still works; what it shows is not saved
            self._log_failed = True
            self._early = None
            raise DriverError(f"cannot write the session log {self._log_path}: {exc}") from None

    async def _host_reports(self, errors: dict[str, TransportError | None]) -> dict[str, Any]:
        """Each host's kernel and tools (the header's ``hosts``), asked of all at once."""

        async def one(name: str) -> dict[str, Any]:
            error = errors.get(name)
            if error is not None:
                return {"reachable": False, "error": error.message}
            runner = self._hosts[name]
            report = await probe_host(runner, getattr(runner, "rtt_ms", None))
            return dataclasses.asdict(report)

        names = list(errors)
        found = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        return {
            name: report
            if isinstance(report, dict)
            else {"reachable": False, "error": f"{type(report).__name__}: {report}"}
            for name, report in zip(names, found, strict=True)
        }

    async def _open_log(self, hosts: dict[str, Any]) -> None:
        simulation = self._sim.header()["simulation"] if self._sim is not None else None
        header = make_header(
            lab=self._lab.model_dump(mode="json"),
            lab_file=self._lab.source_file,
            lab_sha256=self._lab.digest,
            simulated=self._simulated,
            hosts=hosts,
            simulation=simulation,
        )
        attempt = 0
        while True:
            try:
                self._writer = await SessionLogWriter.create(self._log_path, header)
                break
            except FileExistsError:  # a console started in the same second: never overwrite
                if self._log_fixed or attempt > 100:
                    raise
                attempt += 1
                self._log_path = self._log_path.with_name(_log_name(self._log_wall, attempt))
        early, self._early = self._early or [], None
        for event in early:
            self._writer.write(event)
        self._writer.on_failure(self._log_broke)

    def _log_broke(self, error: SessionLogWriteError) -> None:
        """The log cannot be written (disk full): stop what runs, say so, start nothing."""
        self._log_error = str(error)
        running = self._current()
        what = f"; stopping {running.label}" if running is not None else ""
        self._note(f"{error}{what}. Nothing more is recorded: quit, free space.", "error")
        if running is not None:
            self._log_stop = asyncio.get_running_loop().create_task(self.cancel())

    def set_end_status(self, status: EndStatus) -> None:
        """How the console ended, for the log's end marker: "interrupted" when quitting
        stopped something, "crashed" on an unhandled error (it wins over the others)."""
        if self._end_status != "crashed":
            self._end_status = status

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stop_poller()
        interrupted = bool(self._actions)
        for action in list(self._actions):  # their cleanup runs (the runner's, the driver's)
            action.stop()
            await action.wait(CLOSE_WAIT_S)
        if self._log_stop is not None:
            await asyncio.wait({self._log_stop}, timeout=CLOSE_WAIT_S)
        await self._hosts.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            status = self._end_status or ("interrupted" if interrupted else self._last_outcome)
            await writer.close(status)
        await self._bus.aclose()
        for unsubscribe in self._subscriptions:
            unsubscribe()
        self._subscriptions.clear()
        if self._clock_set:
            set_clock(None)
            self._clock_set = False

    async def _stop_poller(self) -> None:
        await self._end_look()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _end_look(self) -> None:
        """Let a look in flight finish (it is quick), or stop it if it is not."""
        poll = self._poll
        if poll is None or poll.done():
            return
        await asyncio.wait({poll}, timeout=POLL_YIELD_S)
        poll.cancel()

    # -- the drivers -----------------------------------------------------------------------

    def hypervisor(self) -> HypervisorDriver:
        if self._hypervisor is None:
            self._hypervisor = hypervisor_driver(self._lab, self._hosts, self._bus.publish)
        return self._hypervisor

    def initiator(self) -> InitiatorDriver:
        if self._initiator is None:
            self._initiator = initiator_driver(self._lab, self._hosts, self._bus.publish)
        return self._initiator

    def target(self) -> TargetDriver:
        """The target driver, once the storage host is connected (else its TransportError)."""
        if self._target is None:
            runner = self._hosts[self._lab.storage.host]
            self._target = target_driver(self._lab, runner, self._bus.publish)
        return self._target

    def controller(self) -> LabController:
        if self._controller is None:
            self._controller = LabController(
                self._lab,
                self._hosts,
                self._bus.publish,
                target=self.target(),
                initiator=self.initiator(),
                hypervisor=self.hypervisor(),
            )
        return self._controller

    # -- polling ---------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            self._wake.clear()  # an action that ends from now on wakes the next look
            if not self._actions:
                await self._poll_once()
            # asyncio.wait, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # arrives as the event is set, and the poller would never stop.
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({woken}, timeout=self._poll_s)
            finally:
                woken.cancel()

    async def _poll_once(self) -> None:
        poll = self._poll = asyncio.ensure_future(self._look())
        try:
            await asyncio.wait({poll}, timeout=POLL_TIMEOUT_S)
        finally:
            poll.cancel()  # a look that took too long (or the poller is stopping)
        if poll.done() and not poll.cancelled() and poll.exception() is not None:
            error = poll.exception()  # a bug, not a host's answer: say so once
            self._guarded_note(
                "look", f"could not look at the lab: {type(error).__name__}: {error}"
            )

    async def _look(self) -> None:
        await self._retry_hosts()
        first, second = self._layout.hypervisor_hosts
        await asyncio.gather(
            self._look_at_storage(), self._look_at_host(first), self._look_at_host(second)
        )

    def _connected(self, host: str) -> bool:
        runner = self._hosts.get(host)
        return runner is not None and bool(getattr(runner, "connected", True))

    async def _retry_hosts(self) -> None:
        now = time.monotonic()
        due = [name for name, (when, _) in self._retry_at.items() if when <= now]
        if not due:
            return
        errors = await self._hosts.open(due)
        for name in due:
            pause = self._retry_at[name][1]
            if errors.get(name) is None:
                del self._retry_at[name]
            else:
                pause = min(pause * 2, RETRY_MAX_S)
                self._retry_at[name] = (time.monotonic() + pause, pause)

    async def _guarded(self, part: str, look: Awaitable[None]) -> None:
        """Run one part of a look; a failure is noted once (until it changes or heals)."""
        try:
            await look
        except _EXPECTED as exc:
            self._guarded_note(part, f"could not look at {part}: {exc}")
            return
        self._poll_notes.pop(part, None)

    def _guarded_note(self, part: str, text: str) -> None:
        if self._poll_notes.get(part) != text:
            self._poll_notes[part] = text
            self._note(text, "warning")

    async def _look_at_host(self, host: str) -> None:
        if not self._connected(host):
            return
        await self._guarded(host, self._host_state(host))

    async def _host_state(self, host: str) -> None:
        hypervisor = self.hypervisor()
        await hypervisor.domains(host)  # the driver publishes domain.state when it changed
        info = await hypervisor.info(host)
        self._changed(
            ("resources", host),
            (info.free_memory_mb, info.total_memory_mb),
            HostResources(
                host=host,
                free_memory_mb=info.free_memory_mb,
                total_memory_mb=info.total_memory_mb,
                hypervisor_version=info.hypervisor_version,
            ),
        )
        iqn = self._lab.storage.iqn
        sessions = await self.initiator().sessions(host)
        ours = next((s for s in sessions if s.iqn == iqn), None)
        state: Literal["logged-in", "logged-out"] = "logged-in" if ours else "logged-out"
        portal = ours.portal if ours is not None else str(self._lab.storage.portal)
        self._changed(
            ("session", host),
            state,
            InitiatorSession(host=host, iqn=iqn, portal=portal, state=state, changed=False),
        )

    async def _look_at_storage(self) -> None:
        storage = self._lab.storage
        if not self._connected(storage.host):
            return
        await self._guarded(storage.host, self._storage_state())

    async def _storage_state(self) -> None:
        storage = self._lab.storage
        status = await self.target().status()
        found = status.find(storage.iqn)
        lun = next((x for x in found.luns if x.lun == storage.lun), None) if found else None
        if found is not None and lun is not None:
            event: Event = StorageExported(
                host=storage.host,
                iqn=storage.iqn,
                lun=storage.lun,
                backing=lun.backing or storage.device,
                changed=False,
            )
        else:
            event = StorageUnexported(host=storage.host, iqn=storage.iqn)
        self._changed(("storage", storage.iqn), lun is not None, event)

    def _changed(self, key: tuple[str, str], value: object, event: Event) -> None:
        """Publish ``event`` if ``value`` differs from what the panes were last told."""
        if key in self._seen and self._seen[key] == value:
            return
        self._seen[key] = value
        self._bus.publish(event)

    # -- running actions -------------------------------------------------------------------

    async def _act(
        self, label: str, kind: ActionKind, work: Callable[[_Action], Awaitable[T]]
    ) -> T:
        """Run ``work`` as the action ``label``: polls wait, a cancel can find and stop it.

        ``work`` gets its :class:`_Action` (to see whether a stop was asked for). If the
        caller is cancelled, so is the action (its own cleanup runs first).
        """
        if self._closed:
            raise DriverError("the console is closing")
        if self._log_error is not None:
            raise DriverError(f"{self._log_error}: nothing is done that would go unrecorded")
        action = _Action(label, kind, self._commands_seen)
        self._actions.append(action)  # from now on no new look starts
        try:
            await self._end_look()
            task = action.task = asyncio.ensure_future(work(action))
            try:
                result: T = await task
            except asyncio.CancelledError:
                self._last_outcome = "interrupted"
                raise
            except Exception:
                self._last_outcome = "interrupted" if action.stop_requested else "failed"
                raise
            self._last_outcome = "interrupted" if action.stop_requested else "ok"
            return result
        finally:
            self._actions.remove(action)
            self._wake.set()  # look at the lab as the action left it

    def _current(self) -> _Action | None:
        """The action a cancel stops: the newest prepare, boot, migration or scenario."""
        main = [a for a in self._actions if a.kind in ("prepare", "boot", "migrate", "scenario")]
        return main[-1] if main else None

    def scenarios(self) -> Sequence[ScenarioInfo]:
        return [scenario_info(s) for s in self._runnable.values()]

    def _runnable_scenarios(
        self, offered: Mapping[str, Scenario], quick: bool
    ) -> dict[str, Scenario]:
        """The scenarios offered that this lab can run (quick when asked)."""
        found: dict[str, Scenario] = {}
        for scenario in offered.values():
            if scenario.lab_problems(self._lab):
                continue
            if scenario.compare_disks and self._sim is None:
                continue  # only the simulated lab can move the guest to a local disk yet
            if self._simulated and any(e.place == CONSOLE for e in scenario.entries):
                continue  # this machine is no simulated host: its ping reaches nothing there
            found[scenario.id] = scenario.quick() if quick else scenario
        return found

    async def prepare(self) -> None:
        async def work(_: _Action) -> None:
            await self.controller().prepare()

        await self._act("prepare", "prepare", work)

    async def boot(self, host: str) -> None:
        async def work(_: _Action) -> None:
            await self.controller().boot(host)

        await self._act(f"boot on {host}", "boot", work)

    async def migrate(self, dest: str) -> None:
        async def work(action: _Action) -> None:
            outcome = await self.controller().migrate(dest)
            if outcome.ok:
                return
            if action.stop_requested:
                raise asyncio.CancelledError  # stopped on request: the console says "stopped"
            raise DriverError(f"the migration to {dest} failed: {outcome.error or 'no reason'}")

        await self._act(f"migrate to {dest}", "migrate", work)

    async def run_scenario(self, scenario_id: str) -> None:
        scenario = self._runnable.get(scenario_id)
        if scenario is None:
            known = ", ".join(self._runnable)
            raise RunAborted(f"no scenario {scenario_id!r} on this lab; these run here: {known}")

        async def work(_: _Action) -> None:
            runner = self._experiment(scenario)
            problem = runner.unsupported()
            if problem is not None:
                raise RunAborted(problem)
            result = await runner.run()
            if result.status != "ok":
                raise RunAborted(result.error or f"{scenario.id} {result.status}")

        await self._act(scenario.id, "scenario", work)

    def _experiment(self, scenario: Scenario) -> ExperimentRunner:
        sim = self._sim
        if sim is None:
            return ExperimentRunner(
                self._lab,
                self._hosts,
                self._bus,
                scenario,
                simulated=self._simulated,
                controller=self.controller(),
            )
        return ExperimentRunner(
            self._lab,
            self._hosts,
            self._bus,
            scenario,
            simulated=True,
            controller=self.controller(),
            switch_disk=sim.switch_disk,
            clock=sim.clock,
            sleep=sim.runtime.sleep,
            simulation=sim.header()["simulation"],
        )

    # -- stopping --------------------------------------------------------------------------

    async def cancel(self) -> None:
        action = self._current()
        if action is None:
            return
        action.stop_requested = True
        if action.kind == "migrate":
            # The driver's own cancel leaves the guest running on the source. (Not
            # asyncio.wait_for: on Python 3.11 it can swallow a cancel of its caller.)
            asking = asyncio.ensure_future(self.controller().cancel_migration())
            try:
                await asyncio.wait({asking}, timeout=MIGRATION_STOP_S)
            finally:
                asking.cancel()
            if asking.done() and not asking.cancelled() and asking.exception() is not None:
                self._note(f"could not cancel the migration: {asking.exception()}", "warning")
            if await action.wait(MIGRATION_STOP_S):
                self._note(f"{action.label} cancelled", "warning")
                return
        action.stop()
        await action.wait(CLOSE_WAIT_S)
        what = "; probes stopped" if action.kind == "scenario" else ""
        self._note(f"{action.label} cancelled{what}", "warning")

    async def plan_cancel(self) -> list[HostCommand]:
        action = self._current()
        if action is None:
            return []
        commands: list[HostCommand] = []
        hypervisor = self.hypervisor()
        if isinstance(hypervisor, QemuDriver) and action.kind in ("migrate", "scenario"):
            # QEMU's migration is cancelled over QMP, not by stopping a command.
            with contextlib.suppress(*_EXPECTED):
                for source in await self._guest_hosts():
                    socket = hypervisor.files(source).qmp
                    commands.append(HostCommand(source, ("qmp", socket, "migrate_cancel")))
        mine = [c for seq, c in self._running_commands.values() if seq >= action.first_command]
        for command in sorted(dict.fromkeys(mine), key=lambda c: c.host):
            commands.append(HostCommand(command.host, ("stop", *command.argv)))
        return commands

    # -- the guest -------------------------------------------------------------------------

    async def plan_shutdown(self, host: str) -> list[HostCommand]:
        return (await self.hypervisor().shutdown(host, dry_run=True)).commands

    async def shutdown_guest(self, host: str) -> None:
        async def work(_: _Action) -> None:
            await self.hypervisor().shutdown(host)

        await self._act(f"shut down on {host}", "guest", work)

    async def plan_destroy(self, host: str) -> list[HostCommand]:
        return (await self.hypervisor().destroy(host, dry_run=True)).commands

    async def destroy_guest(self, host: str) -> None:
        async def work(_: _Action) -> None:
            await self.hypervisor().destroy(host)

        await self._act(f"destroy on {host}", "guest", work)

    # -- the shared disk -------------------------------------------------------------------

    async def _guest_hosts(self) -> list[str]:
        """The hypervisor hosts the guest runs on now (asked of both at once)."""
        hypervisor, guest = self.hypervisor(), self._lab.guest.name
        hosts = self._layout.hypervisor_hosts
        found = await asyncio.gather(*(hypervisor.domains(h) for h in hosts))
        return [
            host
            for host, domains in zip(hosts, found, strict=True)
            if any(d.name == guest and d.state in ALIVE for d in domains)
        ]

    async def _refuse_while_guest_runs(self, where: str | None, what: str) -> None:
        """Refuse ``what`` while the guest runs (on ``where``, or anywhere): it would lose
        its disk in the middle of writing to it."""
        running = [h for h in await self._guest_hosts() if where is None or h == where]
        if running:
            raise Refused(
                f"the guest runs on {running[0]} from the shared disk; {what} would pull the "
                "disk from under it: shut the guest down (s) or destroy it (d) first"
            )

    async def plan_logout(self, host: str) -> list[HostCommand]:
        await self._refuse_while_guest_runs(host, f"logging {host} out")
        return (await self.initiator().logout(host, dry_run=True)).commands

    async def logout(self, host: str) -> None:
        async def work(_: _Action) -> None:
            await self._refuse_while_guest_runs(host, f"logging {host} out")
            await self.initiator().logout(host)

        await self._act(f"log {host} out", "storage", work)

    async def plan_unexport(self) -> list[HostCommand]:
        await self._refuse_while_guest_runs(None, "removing the export")
        return (await self.target().unexport(force=True, dry_run=True)).commands

    async def unexport(self) -> None:
        async def work(_: _Action) -> None:
            await self._refuse_while_guest_runs(None, "removing the export")
            await self.target().unexport(force=True)

        await self._act("unexport", "storage", work)


class ReadOnlyLiveBackend(ReadOnlyActions, LiveBackend):
    """The live backend with every host-changing action refused (``--readonly``).

    It still connects, looks at the lab every few seconds (read-only commands) and
    keeps a session log of what it saw.
    """

    refusal = "the console was started with --readonly: it watches the lab and changes nothing"

    @property
    def readonly(self) -> bool:
        return True


def make_backend(
    lab: LabConfig,
    *,
    readonly: bool,
    simulated: bool = False,
    sim: SimulatedLab | None = None,
    log_dir: Path = DEFAULT_LOG_DIR,
    log_path: Path | None = None,
    quick: bool = False,
    scenarios: Mapping[str, Scenario] | None = None,
    poll_s: float = POLL_S,
) -> ConsoleBackend:
    """The console's backend on ``lab``.

    ``simulated``: the lab is a simulated one (the SIMULATED badge, the log's header);
    ``sim``: that simulated lab, running in this process (its clock and ``switch_disk``;
    ``lab`` is then normally ``sim.lab_config``). ``log_dir``: where the session log
    ``console-YYYYmmdd-HHMMSS.jsonl`` goes (``log_path`` names the file instead).
    ``quick``: the scenarios' timelines shortened (x0.1). ``scenarios``: offered instead
    of the built-in ones. ``poll_s``: seconds between two looks at the lab.
    """
    cls = ReadOnlyLiveBackend if readonly else LiveBackend
    return cls(
        lab,
        simulated=simulated,
        sim=sim,
        log_dir=log_dir,
        log_path=log_path,
        quick=quick,
        scenarios=scenarios,
        poll_s=poll_s,
    )
