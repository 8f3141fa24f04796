"""The typed events every layer speaks, and the bus that carries them.

Data flows one way: host -> transport -> driver/probe -> events -> bus ->
{session log, TUI, headless printer}. An event is a small pydantic model with
a ``kind`` tag; the session log stores ``event.model_dump(mode="json")`` one per
line, and :func:`parse_event` turns such a dict back into the right class
(unknown kinds from newer or older logs come back as :class:`UnknownEvent`).

Every event class is defined here and listed in :data:`KnownEvent`: the reader's
table :data:`KINDS` is built from that list alone, so a log reads the same whatever
else the reading program imported.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


_clock: Callable[[], float] = time.time


def now() -> float:
    """Time of an event: wall-clock seconds since the epoch, or the simulated lab's clock."""
    return _clock()


def set_clock(clock: Callable[[], float] | None) -> None:
    """Stamp events with ``clock`` (the simulated lab's), or wall time again with None.

    A simulated session must use one clock for everything it records: the simulated
    tools print simulated times (ping -D), so phases and results must too.
    """
    global _clock
    _clock = time.time if clock is None else clock


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    kind: str
    t: float = Field(default_factory=now, description="wall-clock seconds since the epoch")


class CommandStarted(Event):
    kind: Literal["command.started"] = "command.started"
    host: str
    cmd_id: int
    argv: list[str]
    channel: Literal["pool", "exec", "local"] = "exec"
    poll: bool = False  # a routine read-only look (the console's poller), not an action


class CommandOutput(Event):
    kind: Literal["command.output"] = "command.output"
    host: str
    cmd_id: int
    stream: Literal["stdout", "stderr"]
    line: str


class CommandFinished(Event):
    kind: Literal["command.finished"] = "command.finished"
    host: str
    cmd_id: int
    argv: list[str]
    exit_status: int | None
    duration_s: float
    # Why it ended without an exit status: "timeout", "cancelled", "connection lost: ..."
    failure: str | None = None
    stdout_tail: list[str] = Field(default_factory=list)
    stderr_tail: list[str] = Field(default_factory=list)


class HostState(Event):
    kind: Literal["host.state"] = "host.state"
    host: str
    state: Literal["connecting", "connected", "disconnected", "failed", "closed"]
    reason: str | None = None
    rtt_ms: float | None = None


class HostResources(Event):
    """What a hypervisor host has for a guest (after the driver's info())."""

    kind: Literal["host.resources"] = "host.resources"
    host: str
    free_memory_mb: int | None = None
    total_memory_mb: int | None = None
    hypervisor_version: str | None = None


class Phase(Event):
    kind: Literal["phase"] = "phase"
    name: str  # warmup | baseline | migrating | after | ...


class Sample(Event):
    """One probe reading (a ping reply, a sysbench interval, ...)."""

    kind: Literal["sample"] = "sample"
    # None: the tool printed no time for this reading (BusyBox ping, iputils ping without
    # -D, imported): it has its place in the stream and its seq, and no invented time.
    t: float | None = Field(  # type: ignore[assignment]
        default_factory=now, description="wall-clock seconds since the epoch; None: not known"
    )
    probe: str
    host: str
    values: dict[str, float | None]
    unit: dict[str, str] = Field(default_factory=dict)


class StorageExported(Event):
    kind: Literal["storage.exported"] = "storage.exported"
    host: str
    iqn: str
    lun: int
    backing: str
    changed: bool


class StorageUnexported(Event):
    """The target no longer exports the lab's disk (``forced``: initiators were cut off)."""

    kind: Literal["storage.unexported"] = "storage.unexported"
    host: str
    iqn: str
    forced: bool = False
    initiators: list[str] = Field(default_factory=list)


class InitiatorSession(Event):
    kind: Literal["initiator.session"] = "initiator.session"
    host: str
    iqn: str
    portal: str
    state: Literal["logged-in", "logged-out", "failed"]
    changed: bool = True


class DomainState(Event):
    kind: Literal["domain.state"] = "domain.state"
    host: str
    domain: str
    state: str


class MigrationProgress(Event):
    kind: Literal["migration.progress"] = "migration.progress"
    domain: str
    source: str
    dest: str
    iteration: int | None = None
    transferred_bytes: int | None = None
    remaining_bytes: int | None = None
    total_bytes: int | None = None
    mbps: float | None = None
    expected_downtime_ms: float | None = None
    phase: str | None = None  # xl: started / precopy / stop-and-copy / done / failed
    xl_event: str | None = None  # xl: which line of xl's output this update came from
    status: str | None = None  # qemu: query-migrate's status (active, device, ...)
    cpu_throttle_percentage: float | None = None  # qemu auto-converge's vCPU throttle


class MigrationFinished(Event):
    kind: Literal["migration.finished"] = "migration.finished"
    domain: str
    source: str
    dest: str
    ok: bool
    total_time_ms: float | None = None
    downtime_ms: float | None = None
    transferred_bytes: int | None = None
    iterations: int | None = None
    error: str | None = None
    guest_host: str | None = None  # where the guest runs afterwards (None: unclear)
    wall_time_ms: float | None = None  # measured by miglab around the whole operation
    setup_time_ms: float | None = None  # qemu's setup-time


class MigrationMeasured(Event):
    """One migration as miglab measured it, published once the guest answered ping again
    (or ping gave up on it): the hypervisor's numbers beside the network's, worked out
    the way `miglab report` works them out afterwards."""

    kind: Literal["migration.measured"] = "migration.measured"
    domain: str
    source: str
    dest: str
    ok: bool
    total_s: float | None = None
    downtime_ms: float | None = None  # the hypervisor's own figure (xl 4.17 has none)
    unreachable_s: float | None = None  # longest silence between ping replies across it
    lost_probes: int | None = None
    limit_s: float | None = None  # guest memory / link speed: no copy of it can be faster
    notes: list[str] = Field(default_factory=list)

    @property
    def over_limit(self) -> float | None:
        """The total time as a multiple of the physical limit."""
        if self.total_s is None or not self.limit_s:
            return None
        return self.total_s / self.limit_s

    def network_text(self) -> str:
        """What the network saw of it, in one line (the console, `miglab run`)."""
        count = self.lost_probes
        lost = "" if count is None else f" ({count} ping{'' if count == 1 else 's'} lost)"
        if self.lost_probes == 0 and self.unreachable_s == 0:
            parts = ["no ping lost"]  # silent for less than ping's interval, if at all
        elif self.unreachable_s is not None:
            parts = [f"unreachable {self.unreachable_s:.2f} s{lost}"]
        else:
            parts = [f"unreachable unknown{lost}"]
        over = self.over_limit
        if over is not None and self.limit_s is not None:
            parts.append(f"{over:.1f}x the memory/link limit ({self.limit_s:.1f} s)")
        return ", ".join(parts)


class ExperimentStarted(Event):
    """A run of ``scenario`` begins (what the timeline will be)."""

    kind: Literal["experiment.started"] = "experiment.started"
    scenario: str
    title: str
    repetitions: int
    migrations: int
    sequence: str
    timeline: dict[str, float]


class RepetitionStarted(Event):
    """A repetition of the scenario's timeline begins (``number`` counts from 1)."""

    kind: Literal["experiment.repetition"] = "experiment.repetition"
    number: int
    of: int | None = None


class DiskStarted(Event):
    """From here on, the guest runs from ``disk`` ("local" or "iscsi"): a disk comparison arm."""

    kind: Literal["experiment.disk"] = "experiment.disk"
    disk: str


class ExperimentFinished(Event):
    """A run ended: status "ok", "failed" (``error`` says why) or "interrupted"."""

    kind: Literal["experiment.finished"] = "experiment.finished"
    scenario: str
    status: str
    error: str | None = None


class Note(Event):
    kind: Literal["note"] = "note"
    text: str
    level: Literal["info", "warning", "error"] = "info"


class UnknownEvent(Event):
    """An event whose kind this version does not know; kept as it was read."""


KnownEvent: TypeAlias = (
    CommandStarted
    | CommandOutput
    | CommandFinished
    | HostState
    | HostResources
    | Phase
    | Sample
    | StorageExported
    | StorageUnexported
    | InitiatorSession
    | DomainState
    | MigrationProgress
    | MigrationFinished
    | MigrationMeasured
    | ExperimentStarted
    | RepetitionStarted
    | DiskStarted
    | ExperimentFinished
    | Note
)
"""Every event kind this version writes and reads; a new event class goes here too."""

EVENT_CLASSES: tuple[type[Event], ...] = get_args(KnownEvent)


def _kinds(classes: tuple[type[Event], ...]) -> dict[str, type[Event]]:
    table: dict[str, type[Event]] = {}
    for cls in classes:
        kind = cls.model_fields["kind"].default
        if not isinstance(kind, str) or kind in table:
            raise TypeError(f"{cls.__name__}: its kind {kind!r} is missing or taken")
        table[kind] = cls
    return table


KINDS: Mapping[str, type[Event]] = MappingProxyType(_kinds(EVENT_CLASSES))
"""The reader's one table, kind -> class: a log reads the same whatever was imported."""


def parse_event(data: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON form; tolerant of kinds and fields we do not know."""
    cls = KINDS.get(str(data.get("kind")))
    if cls is not None:
        try:
            return cls.model_validate(data)
        except ValidationError:
            log.debug("event of kind %s did not validate; kept as unknown", data.get("kind"))
    return UnknownEvent.model_validate(data)  # raises ValidationError if even that fails


Unsubscribe = Callable[[], None]
"""What ``subscribe`` returns: call it to stop the callback getting events (idempotent)."""


class EventBus:
    """Fan-out of events to subscribers, in publish order.

    ``publish`` never blocks the publisher: subscribers run inline and must be
    quick (the TUI posts a message, the printer writes a line, the session log
    queues the event for its own writer task), so a slow disk never stalls a
    transport reading a remote command's output.

    Whoever listens for a limited time (a run, a console's view) unsubscribes when
    done, with what ``subscribe`` returned or with :meth:`unsubscribe`; a bus lives
    as long as its console, and a dead subscriber on it would be fed for ever.
    """

    def __init__(self) -> None:
        self._sync: list[Callable[[Event], object]] = []
        self._pending: deque[Event] = deque()
        self._delivering = False

    @property
    def subscriber_count(self) -> int:
        """How many callbacks get events now."""
        return len(self._sync)

    def subscribe(self, callback: Callable[[Event], object]) -> Unsubscribe:
        """A subscriber, called inline for every event."""
        self._sync.append(callback)
        entry = self._sync[-1]

        def unsubscribe() -> None:
            # By identity: bound methods compare equal to fresh ones of the same object.
            for i, cb in enumerate(self._sync):
                if cb is entry:
                    del self._sync[i]
                    return

        return unsubscribe

    def unsubscribe(self, callback: Callable[..., object]) -> None:
        """Stop feeding ``callback`` (each subscription of it); nothing if it has none."""
        self._sync = [cb for cb in self._sync if cb != callback]

    def publish(self, event: Event) -> None:
        """Give ``event`` to every subscriber. A subscriber that publishes in turn (the
        migration meter) has its event given out after this one has reached everybody,
        so every subscriber sees the same order."""
        self._pending.append(event)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                current = self._pending.popleft()
                for callback in tuple(self._sync):  # a callback may unsubscribe meanwhile
                    try:
                        callback(current)
                    except Exception:
                        log.exception("event subscriber failed on %s", current.kind)
        finally:
            self._delivering = False
