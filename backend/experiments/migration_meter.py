"""Every migration measured as it ends: the hypervisor's times beside the network's.

A :class:`MigrationMeter` listens to a session's events. When a migration finishes it
waits for the answer that only the network can give, the guest's first ping reply
after it, then publishes one :class:`~backend.events.MigrationMeasured`: total time,
the hypervisor's downtime, the longest silence between ping replies across the
migration (the guest was unreachable at least that long), the probes lost, and the
physical limit (guest memory over link speed) the total time compares with.

It works the numbers out with :mod:`backend.experiments.metrics`, over the events seen
so far, so the console says what `miglab report` will say of the saved log. It waits
on events, never on a clock: the ping's own timestamps say when it has waited long
enough for a guest that does not answer.
"""

from __future__ import annotations

from collections.abc import Callable

from backend.events import Event, MigrationFinished, MigrationMeasured, Sample
from backend.experiments.metrics import LogData, MigrationMetrics, analyze_data
from backend.probes.ping import PROBE as PING
from backend.probes.ping import sample_kind

GIVE_UP_S = 30.0
"""A guest still silent this long after its migration: measured as unreachable for an
unknown time (ping's samples say how long has passed, not a timer)."""


def physical_limit_s(memory_mb: int, link_mbit: int) -> float:
    """Seconds to send the guest's memory once at link speed: a lower bound on any
    pre-copy migration of it."""
    return memory_mb * 2**20 * 8 / (link_mbit * 1e6)


class MigrationMeter:
    """Feed it every event of a session (``bus.subscribe(meter.feed)``)."""

    def __init__(self, publish: Callable[[Event], None], *, memory_mb: int, link_mbit: int) -> None:
        self._publish = publish
        self._limit_s = physical_limit_s(memory_mb, link_mbit)
        self._data = LogData()
        self._waiting: MigrationFinished | None = None
        self._pinging = False  # a ping sample arrived since the last migration started

    def feed(self, event: Event) -> None:
        if isinstance(event, MigrationMeasured):
            return
        self._data.add(event)
        if isinstance(event, MigrationFinished):
            self.flush()  # a migration still waiting is measured with what there is
            self._waiting = event
            if not self._pinging:
                self.flush()  # nothing pings the guest: nothing to wait for
        elif isinstance(event, Sample) and event.probe == PING and event.t is not None:
            self._pinging = True
            waiting = self._waiting
            if waiting is None or event.t <= waiting.t:
                return
            kind = sample_kind(event)
            if kind == "reply" or (kind == "loss" and event.t - waiting.t >= GIVE_UP_S):
                self.flush()

    def flush(self) -> None:
        """Measure the migration still waiting for ping, if any (the session ends)."""
        finished, self._waiting = self._waiting, None
        if finished is None:
            return
        migrations = analyze_data(self._data).migrations
        measured = migrations[-1] if migrations else None
        self._publish(self._measured(finished, measured))
        self._pinging = False

    def _measured(
        self, finished: MigrationFinished, metrics: MigrationMetrics | None
    ) -> MigrationMeasured:
        notes: list[str] = []
        if metrics is None or metrics.lost_probes is None:
            notes.append("no ping ran through the migration: its unreachable time is unknown")
        if metrics is not None:
            notes.extend(metrics.notes)
        return MigrationMeasured(
            domain=finished.domain,
            source=finished.source,
            dest=finished.dest,
            ok=finished.ok,
            total_s=None if metrics is None else metrics.total_s,
            downtime_ms=finished.downtime_ms,
            unreachable_s=None if metrics is None else metrics.unreachable_s,
            lost_probes=None if metrics is None else metrics.lost_probes,
            limit_s=self._limit_s,
            notes=notes,
        )
