"""What the panes show, folded from the event stream.

:class:`LabState` takes events one at a time (``apply``) and keeps the lab as the
console draws it: each host's connection, domains and iSCSI session, the export,
where the guest runs and whether it answers, the migration in progress, the
commands run and their output, and the traces. ``apply`` returns what changed,
so the screen redraws only those panes.

No Textual here: the same folding works on a live stream and on a saved log.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from backend.events import (
    CommandFinished,
    CommandOutput,
    CommandStarted,
    DomainState,
    Event,
    HostState,
    InitiatorSession,
    MigrationFinished,
    MigrationMeasured,
    MigrationProgress,
    Note,
    Phase,
    Sample,
    StorageExported,
)
from tui.backend_api import LabLayout
from tui.widgets.traces import Trace, TraceStore

MAX_COMMANDS = 2000
"""Commands kept for the log pane; the oldest go first."""

MAX_OUTPUT_LINES = 2000
"""Output lines kept per command (the session log has all of them)."""

MAX_WINDOWS = 50

# Consecutive ping losses after which the guest counts as unreachable.
UNREACHABLE_AFTER = 3

RUNNING_STATES = frozenset({"running", "blocked"})
GONE_STATES = frozenset(
    {"shutdown", "crashed", "dying", "destroyed", "absent", "gone", "shutoff", "none"}
)

# Event kinds read by their fields, not their classes: a logged event that did not
# validate (another miglab version wrote it) is kept as an UnknownEvent with its fields,
# and a replay still shows what it says.
HOST_RESOURCES_KIND = "host.resources"  # host, free_memory_mb, total_memory_mb
STORAGE_UNEXPORTED_KIND = "storage.unexported"
EXPERIMENT_STARTED_KIND = "experiment.started"  # scenario
EXPERIMENT_FINISHED_KIND = "experiment.finished"  # scenario, status


@dataclass
class HostView:
    name: str
    role: str  # "storage" | "hypervisor"
    state: str = "unknown"
    reason: str | None = None
    rtt_ms: float | None = None
    since: float | None = None
    free_memory_mb: float | None = None
    total_memory_mb: float | None = None
    domains: dict[str, str] = field(default_factory=dict)
    session: str | None = None  # the initiator session to the shared disk


@dataclass
class StorageView:
    exported: bool = False
    iqn: str | None = None
    lun: int | None = None
    backing: str | None = None
    initiators: dict[str, str] = field(default_factory=dict)  # host -> session state


@dataclass
class GuestView:
    name: str
    host: str | None = None
    state: str | None = None
    last_reply_t: float | None = None
    lost_in_a_row: int = 0
    unreachable_since: float | None = None
    pinged: bool = False

    @property
    def reachable(self) -> bool | None:
        """None until a ping says either way."""
        if not self.pinged:
            return None
        return self.lost_in_a_row < UNREACHABLE_AFTER


@dataclass
class MigrationView:
    active: bool = False
    domain: str | None = None
    source: str | None = None
    dest: str | None = None
    started: float | None = None
    iteration: int | None = None
    transferred_bytes: int | None = None
    remaining_bytes: int | None = None
    total_bytes: int | None = None
    mbps: float | None = None
    expected_downtime_ms: float | None = None
    result: MigrationFinished | None = None
    measured: MigrationMeasured | None = None  # what the network saw, once ping could tell


@dataclass
class CommandView:
    cmd_id: int
    host: str
    argv: list[str]
    started: float
    channel: str
    exit_status: int | None = None
    duration_s: float | None = None
    failure: str | None = None
    finished: bool = False
    poll: bool = False  # a routine read-only look, hidden from the command pane by default
    output: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=MAX_OUTPUT_LINES))
    lines_seen: int = 0
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finished and self.failure is None and self.exit_status == 0

    def status_text(self) -> str:
        if not self.finished:
            return "running"
        if self.failure is not None:
            return self.failure.split(":", 1)[0]
        return f"exit {self.exit_status}"


@dataclass
class Changes:
    """What one batch of events changed, so the screen touches only that."""

    hosts: set[str] = field(default_factory=set)
    storage: bool = False
    guest: bool = False
    migration: bool = False
    phase: bool = False
    commands: list[int] = field(default_factory=list)  # new or finished, in order
    traces: set[tuple[str, str]] = field(default_factory=set)
    new_traces: list[tuple[str, str]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


class LabState:
    """The lab as the console shows it."""

    def __init__(self, layout: LabLayout, t0: float) -> None:
        self.layout = layout
        self.t0 = t0
        self.hosts: dict[str, HostView] = {
            layout.storage_host: HostView(layout.storage_host, "storage")
        }
        for name in layout.hypervisor_hosts:
            self.hosts[name] = HostView(name, "hypervisor")
        self.storage = StorageView(iqn=layout.iqn, lun=layout.lun)
        self.guest = GuestView(layout.guest)
        self.migration = MigrationView()
        self.windows: deque[tuple[float, float | None]] = deque(maxlen=MAX_WINDOWS)
        self.phase: str | None = None
        self.phase_t: float | None = None
        self.scenario: str | None = None
        self.scenario_status: str | None = None  # running | ok | failed | interrupted
        self.commands: OrderedDict[int, CommandView] = OrderedDict()
        self.traces = TraceStore()
        self.last_t: float | None = None

    # -- folding -------------------------------------------------------------------------

    def apply_all(self, events: list[Event]) -> Changes:
        changes = Changes()
        for event in events:
            self.apply(event, changes)
        return changes

    def apply(self, event: Event, changes: Changes | None = None) -> Changes:
        changes = changes if changes is not None else Changes()
        self.last_t = event.t if self.last_t is None else max(self.last_t, event.t)
        if isinstance(event, Sample):
            self._sample(event, changes)
        elif isinstance(event, CommandOutput):
            command = self.commands.get(event.cmd_id)
            if command is not None:
                command.output.append((event.stream, event.line))
                command.lines_seen += 1
        elif isinstance(event, CommandStarted):
            self._command_started(event, changes)
        elif isinstance(event, CommandFinished):
            self._command_finished(event, changes)
        elif isinstance(event, HostState):
            host = self._host(event.host)
            if host.state != event.state:
                host.since = event.t
            host.state, host.reason = event.state, event.reason
            if event.rtt_ms is not None:
                host.rtt_ms = event.rtt_ms
            changes.hosts.add(host.name)
        elif isinstance(event, DomainState):
            self._domain(event, changes)
        elif isinstance(event, MigrationMeasured):
            result = self.migration.result
            if result is not None and (result.source, result.dest) == (event.source, event.dest):
                self.migration.measured = event
                changes.migration = True
        elif isinstance(event, MigrationProgress):
            self._progress(event, changes)
        elif isinstance(event, MigrationFinished):
            self._finished(event, changes)
        elif isinstance(event, StorageExported):
            self.storage.exported = True
            self.storage.iqn, self.storage.lun = event.iqn, event.lun
            self.storage.backing = event.backing
            changes.storage = True
        elif isinstance(event, InitiatorSession):
            self.storage.initiators[event.host] = event.state
            self._host(event.host).session = event.state
            changes.storage = True
            changes.hosts.add(event.host)
        elif isinstance(event, Phase):
            self.phase, self.phase_t = event.name, event.t
            if event.name == "migrating" and not self.migration.active:
                self._open_window(event.t)
            changes.phase = True
        elif isinstance(event, Note):
            changes.notes.append(event)
        elif event.kind == HOST_RESOURCES_KIND:
            self._resources(event, changes)
        elif event.kind == STORAGE_UNEXPORTED_KIND:
            self.storage.exported = False
            changes.storage = True
        elif event.kind in (EXPERIMENT_STARTED_KIND, EXPERIMENT_FINISHED_KIND):
            scenario = getattr(event, "scenario", None)
            if isinstance(scenario, str):
                self.scenario = scenario
                status = getattr(event, "status", None)
                self.scenario_status = status if isinstance(status, str) else "running"
                changes.phase = True
        return changes

    def _host(self, name: str) -> HostView:
        host = self.hosts.get(name)
        if host is None:  # a host the layout does not name (a jump host): still shown
            host = self.hosts[name] = HostView(name, "other")
        return host

    def _sample(self, sample: Sample, changes: Changes) -> None:
        is_new = (sample.probe, sample.host) not in self.traces.traces
        trace = self.traces.add(sample)
        if trace is not None:
            changes.traces.add(trace.key)
            if is_new:
                changes.new_traces.append(trace.key)
            changes.guest = True
        if sample.probe == "ping" and sample.values.get("summary") != 1.0:
            guest = self.guest
            guest.pinged = True
            if sample.values.get("lost") == 1.0:
                if guest.lost_in_a_row == 0:
                    guest.unreachable_since = sample.t
                guest.lost_in_a_row += 1
            elif sample.values.get("rtt_ms") is not None:
                guest.lost_in_a_row = 0
                guest.unreachable_since = None
                guest.last_reply_t = sample.t
            changes.guest = True

    def _command_started(self, event: CommandStarted, changes: Changes) -> None:
        self.commands[event.cmd_id] = CommandView(
            event.cmd_id, event.host, list(event.argv), event.t, event.channel, poll=event.poll
        )
        while len(self.commands) > MAX_COMMANDS:
            self.commands.popitem(last=False)
        changes.commands.append(event.cmd_id)

    def _command_finished(self, event: CommandFinished, changes: Changes) -> None:
        command = self.commands.get(event.cmd_id)
        if command is None:  # started before the log began, or evicted
            command = CommandView(
                event.cmd_id, event.host, list(event.argv), event.t - event.duration_s, "exec"
            )
            self.commands[event.cmd_id] = command
        command.finished = True
        command.exit_status = event.exit_status
        command.duration_s = event.duration_s
        command.failure = event.failure
        command.stdout_tail = list(event.stdout_tail)
        command.stderr_tail = list(event.stderr_tail)
        changes.commands.append(event.cmd_id)

    def _domain(self, event: DomainState, changes: Changes) -> None:
        host = self._host(event.host)
        state = event.state.lower()
        if state in GONE_STATES:
            host.domains.pop(event.domain, None)
        else:
            host.domains[event.domain] = state
        if event.domain == self.guest.name:
            if state in RUNNING_STATES or state == "paused":
                if state in RUNNING_STATES or self.guest.host in (None, event.host):
                    self.guest.host = event.host
                    self.guest.state = state
            elif self.guest.host == event.host:
                self.guest.host = None
                self.guest.state = state
            changes.guest = True
        changes.hosts.add(host.name)

    def _open_window(self, t: float) -> None:
        if not self.windows or self.windows[-1][1] is not None:
            self.windows.append((t, None))

    def _close_window(self, t: float) -> None:
        if self.windows and self.windows[-1][1] is None:
            self.windows[-1] = (self.windows[-1][0], t)

    def _progress(self, event: MigrationProgress, changes: Changes) -> None:
        migration = self.migration
        if not migration.active:
            self._open_window(event.t)
            started = self.windows[-1][0]
            self.migration = migration = MigrationView(
                active=True, domain=event.domain, started=started
            )
        migration.source, migration.dest = event.source, event.dest
        for name in (
            "iteration",
            "transferred_bytes",
            "remaining_bytes",
            "total_bytes",
            "mbps",
            "expected_downtime_ms",
        ):
            value = getattr(event, name)
            if value is not None:
                setattr(migration, name, value)
        changes.migration = True

    def _finished(self, event: MigrationFinished, changes: Changes) -> None:
        migration = self.migration
        if not migration.active:
            self._open_window(event.t - (event.total_time_ms or 0.0) / 1000.0)
            migration = self.migration = MigrationView(started=self.windows[-1][0])
        self._close_window(event.t)
        migration.active = False
        migration.domain, migration.source, migration.dest = event.domain, event.source, event.dest
        migration.result = event
        if event.ok:
            if event.transferred_bytes is not None:
                migration.transferred_bytes = event.transferred_bytes
            if event.iterations is not None:
                migration.iteration = event.iterations
            migration.remaining_bytes = 0
            if event.domain == self.guest.name:
                self.guest.host = event.dest
                self.guest.state = "running"
                self._host(event.source).domains.pop(event.domain, None)
                self._host(event.dest).domains[event.domain] = "running"
                changes.hosts.update((event.source, event.dest))
                changes.guest = True
        changes.migration = True

    def _resources(self, event: Event, changes: Changes) -> None:
        # getattr: the fields are attributes whether a class defines them or not (extra).
        name = getattr(event, "host", None)
        if not isinstance(name, str):
            return
        host = self._host(name)
        for key in ("free_memory_mb", "total_memory_mb"):
            value = getattr(event, key, None)
            if isinstance(value, int | float) and not isinstance(value, bool):
                setattr(host, key, float(value))
        changes.hosts.add(name)

    # -- questions the screen asks ---------------------------------------------------------

    def guest_host(self) -> str | None:
        return self.guest.host

    def label(self, trace: Trace, *, short: bool = False) -> str:
        return self.traces.label(trace, short=short)

    def seconds(self, t: float) -> float:
        """``t`` as seconds since the session's start."""
        return t - self.t0
