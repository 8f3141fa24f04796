"""The console's backend on a real (or simulated) lab: LabController and the runner behind keys.

:func:`make_backend` builds it on a :class:`~backend.lab_session.LabSession` (the bus,
hosts, clock, session log, drivers and LabController) with a
:class:`~backend.host_poller.HostPoller`; the console drives it through the
:class:`~tui.backend_api.ConsoleBackend` protocol:

* ``start()`` opens every host at once (one that is down shows as failed and is tried
  again, with a growing pause, by the poller; one that drops later reconnects by
  itself, which the transport does), asks each host for its versions, and starts the
  session log ``sessions/console-YYYYmmdd-HHMMSS.jsonl``: a header with the lab, the
  simulated flag and the hosts' versions, then every event the bus carries (events
  from before the log existed are written first, in order).
* The poller (:mod:`backend.host_poller`) looks at the lab every few seconds while no
  action runs and publishes what changed as the events the panes draw. An action
  first lets a look in flight finish (briefly: it only looks).
* The session's pinger (:mod:`backend.guest_pinger`) pings the guest from the storage
  node while it runs (every ``[console] ping_interval_s``, 0.1 s by default; the key i changes
  it): the guest pane's RTT, the RTT trace, and every migration's unreachable time
  (the session's migration meter).
* Actions map onto :class:`~backend.lab.LabController` (which holds every safety rule:
  the console asks it, never decides itself) and the
  :class:`~backend.experiments.runner.ExperimentRunner`; each raises on failure with
  the drivers' own message (host, command, stderr). ``plan_*`` return the exact
  commands from the controller's dry runs. A migration is stopped with the driver's
  cancel (the guest stays on the source); anything else by cancelling its task (the
  runner's cleanup stops every probe and workload). A stopped action raises
  ``CancelledError``, which the console shows as "stopped".
* ``plan_cancel`` lists the commands a cancel stops, as pseudo-commands
  ``stop ARGV`` (the commands the action has running: the transport ends each one's
  process tree) and what the driver's own cancel sends (QEMU's QMP ``migrate_cancel``).
* ``close()`` stops what still runs (cleanly) and the console's own ping, closes the
  hosts, then the session log. The log's end marker says how the session ended: "interrupted" if
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
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from backend.config import LabConfig
from backend.drivers.base import (
    DriverError,
    HostCommand,
    HypervisorDriver,
    InitiatorDriver,
    TargetDriver,
)
from backend.events import CommandFinished, CommandStarted, Event, Note
from backend.experiments.runner import RunAborted
from backend.experiments.scenarios import Scenario, builtin_scenarios, describe_timeline
from backend.host_poller import POLL_S, HostPoller
from backend.lab import LabController
from backend.lab_session import LabSession
from backend.session import EndStatus, SessionLogWriteError
from tui.backend_api import ConsoleBackend, EventCallback, LabLayout, ReadOnlyActions, ScenarioInfo

if TYPE_CHECKING:
    from backend.sim.lab import SimulatedLab

__all__ = ["DEFAULT_LOG_DIR", "LiveBackend", "ReadOnlyLiveBackend", "make_backend"]

DEFAULT_LOG_DIR = Path("sessions")
MIGRATION_STOP_S = 30.0
"""After the driver's cancel, how long the migration may take to end before its task is."""
CLOSE_WAIT_S = 60.0
"""On close, how long a stopped action's cleanup may take."""

ActionKind = Literal["prepare", "boot", "migrate", "scenario", "guest", "storage"]
T = TypeVar("T")


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
        session_start: float | None = None,
    ) -> None:
        self._sim = sim
        self._lab = lab
        self._log_wall = time.time()  # names the log: the simulated clock does not name files
        log = log_path if log_path is not None else log_dir / _log_name(self._log_wall, 0)
        rename = None if log_path is not None else self._renamed
        # The console's drivers are the lab's own (not the simulated lab's, whose waits
        # are on its clock), as they always were.
        self._session = LabSession(
            lab, simulated=simulated, sim=sim, log=log, rename=rename, sim_hypervisor=False
        )
        self._simulated = self._session.simulated
        self._clock = self._session.clock
        self._start_t = self._clock() if session_start is None else session_start
        self._log_failed = False
        self._log_error: str | None = None  # why the log stopped being written, if it did
        self._last_outcome: EndStatus = "ok"  # how the last action ended
        self._end_status: EndStatus | None = None  # how the console ended, when it said
        self._log_stop: asyncio.Task[None] | None = None
        offered = scenarios if scenarios is not None else builtin_scenarios()
        self._runnable = self._session.runnable(offered, quick)
        self._layout = LabLayout.from_config(self._lab)
        self._bus = self._session.bus
        self._hosts = self._session.hosts
        self._running_commands: dict[int, tuple[int, HostCommand]] = {}  # id -> (seq, cmd)
        self._commands_seen = 0
        self._actions: list[_Action] = []
        self._poller = HostPoller(
            lab,
            self._hosts,
            self._bus.publish,
            self._session.controller,
            busy=lambda: bool(self._actions),
            poll_s=poll_s,
        )
        self._pinger = self._session.pinger
        self._started = False
        self._closed = False
        # Dropped at close: the console's view and the poller listen as long as the
        # backend.
        self._subscriptions = [
            self._bus.subscribe(self._track),
            self._bus.subscribe(self._poller.seen),
        ]

    def _renamed(self, attempt: int) -> Path:
        """A console started in the same second: the log's name gets ``-2``, ``-3`` ..."""
        assert self._session.log is not None
        return self._session.log.path.with_name(_log_name(self._log_wall, attempt))

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
        return None if self._log_failed else self._session.log_path

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

    def _track(self, event: Event) -> None:
        """Keep the commands that are running (a cancel stops those of its action)."""
        if isinstance(event, CommandStarted):
            command = HostCommand(event.host, tuple(event.argv))
            self._running_commands[event.cmd_id] = (self._commands_seen, command)
            self._commands_seen += 1
        elif isinstance(event, CommandFinished):
            self._running_commands.pop(event.cmd_id, None)

    def _note(self, text: str, level: Literal["info", "warning", "error"] = "info") -> None:
        self._bus.publish(Note(text=text, level=level))

    # -- starting and closing --------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._session.use_clock()
        errors = await self._session.connect()
        self._poller.retry_later(errors)
        reports = await self._session.host_reports(errors)
        self._poller.start()
        try:
            await self._session.open_log(reports, self._log_broke)
        except OSError as exc:  # the console still works; what it shows is not saved
            self._log_failed = True
            where = self._session.log_path
            raise DriverError(f"cannot write the session log {where}: {exc}") from None

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
        await self._poller.stop()
        await self._pinger.close()
        interrupted = bool(self._actions)
        for action in list(self._actions):  # their cleanup runs (the runner's, the driver's)
            action.stop()
            await action.wait(CLOSE_WAIT_S)
        if self._log_stop is not None:
            await asyncio.wait({self._log_stop}, timeout=CLOSE_WAIT_S)
        status = self._end_status or ("interrupted" if interrupted else self._last_outcome)
        await self._session.close(status)
        for unsubscribe in self._subscriptions:
            unsubscribe()
        self._subscriptions.clear()

    # -- the console's own ping of the guest -------------------------------------------------

    @property
    def ping_interval_s(self) -> float | None:
        return self._pinger.interval_s

    def set_ping_interval(self, interval_s: float | None) -> None:
        self._pinger.set_interval(interval_s)

    # -- the drivers (the session's) -------------------------------------------------------

    def hypervisor(self) -> HypervisorDriver:
        return self._session.hypervisor()

    def initiator(self) -> InitiatorDriver:
        return self._session.initiator()

    def target(self) -> TargetDriver:
        """The target driver, once the storage host is connected (else its TransportError)."""
        return self._session.target()

    def controller(self) -> LabController:
        return self._session.controller()

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
            await self._poller.yield_to()
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
            self._poller.wake()  # look at the lab as the action left it

    def _current(self) -> _Action | None:
        """The action a cancel stops: the newest prepare, boot, migration or scenario."""
        main = [a for a in self._actions if a.kind in ("prepare", "boot", "migrate", "scenario")]
        return main[-1] if main else None

    def scenarios(self) -> Sequence[ScenarioInfo]:
        return [scenario_info(s) for s in self._runnable.values()]

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
            runner = self._session.experiment(scenario)
            problem = runner.unsupported()
            if problem is not None:
                raise RunAborted(problem)
            result = await runner.run()
            if result.status != "ok":
                raise RunAborted(result.error or f"{scenario.id} {result.status}")

        await self._act(scenario.id, "scenario", work)

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
        if action.kind in ("migrate", "scenario"):
            commands += await self.controller().plan_cancel_migration()
        mine = [c for seq, c in self._running_commands.values() if seq >= action.first_command]
        for command in sorted(dict.fromkeys(mine), key=lambda c: c.host):
            commands.append(HostCommand(command.host, ("stop", *command.argv)))
        return commands

    # -- the guest -------------------------------------------------------------------------

    async def plan_shutdown(self, host: str) -> list[HostCommand]:
        return (await self.controller().shutdown_on(host, dry_run=True)).commands

    async def shutdown_guest(self, host: str) -> None:
        async def work(_: _Action) -> None:
            await self.controller().shutdown_on(host)

        await self._act(f"shut down on {host}", "guest", work)

    async def plan_destroy(self, host: str) -> list[HostCommand]:
        return (await self.controller().destroy_on(host, dry_run=True)).commands

    async def destroy_guest(self, host: str) -> None:
        async def work(_: _Action) -> None:
            await self.controller().destroy_on(host)

        await self._act(f"destroy on {host}", "guest", work)

    # -- the shared disk -------------------------------------------------------------------

    async def plan_logout(self, host: str) -> list[HostCommand]:
        return (await self.controller().logout(host, dry_run=True)).commands

    async def logout(self, host: str) -> None:
        async def work(_: _Action) -> None:
            await self.controller().logout(host)

        await self._act(f"log {host} out", "storage", work)

    async def plan_unexport(self) -> list[HostCommand]:
        return (await self.controller().unexport(dry_run=True)).commands

    async def unexport(self) -> None:
        async def work(_: _Action) -> None:
            await self.controller().unexport()

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
    session_start: float | None = None,
) -> ConsoleBackend:
    """The console's backend on ``lab``.

    ``simulated``: the lab is a simulated one (the SIMULATED badge, the log's header);
    ``sim``: that simulated lab, running in this process (its clock and ``switch_disk``;
    ``lab`` is then normally ``sim.lab_config``). ``log_dir``: where the session log
    ``console-YYYYmmdd-HHMMSS.jsonl`` goes (``log_path`` names the file instead).
    ``quick``: the scenarios' timelines shortened (x0.1). ``scenarios``: offered instead
    of the built-in ones. ``poll_s``: seconds between two looks at the lab.
    ``session_start``: when the console's session began, if before now (the screen drawn
    before this backend was made, :mod:`tui.deferred_backend`).
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
        session_start=session_start,
    )
