"""The headless printer of ``miglab run``: one line per phase, migration and problem.

It subscribes to the event bus like the session log does, so it prints what the log
records, as it happens::

      0.0 s  migrate-ping: ping alone: is the guest ever unreachable? (1 repetition)
      2.1 s  rep 1/1  baseline
      7.1 s  rep 1/1  migrating
      9.4 s  rep 1/1  migration xen1 -> xen2: ok, 2.31 s
      9.4 s  rep 1/1  after
     14.5 s  finished: ok

Times are seconds since the run started. The summary at the end is the report's
text (:func:`backend.experiments.report.render_text`) of the saved log. A host that
fails or drops is printed once it had been connected: a guest that is still booting
refuses a few connections, and a host that never answers ends the run with its reason.
"""

from __future__ import annotations

import sys
from typing import TextIO

from backend.events import (
    DiskStarted,
    Event,
    ExperimentFinished,
    ExperimentStarted,
    HostState,
    MigrationFinished,
    MigrationMeasured,
    Note,
    Phase,
    RepetitionStarted,
)
from backend.terminal_text import printable

__all__ = ["HeadlessPrinter"]


class HeadlessPrinter:
    """A bus subscriber that writes one line per event worth a line to ``out``."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out if out is not None else sys.stdout
        self._t0: float | None = None
        self._repetition = ""
        self._connected: set[str] = set()
        self.lines = 0

    def __call__(self, event: Event) -> None:
        text = self._describe(event)
        if text is None:
            return
        if self._t0 is None:
            self._t0 = event.t
        # Names, notes and errors come from files and hosts: never terminal escapes.
        self._out.write(f"{event.t - self._t0:7.1f} s  {printable(text)}\n")
        self._out.flush()
        self.lines += 1

    def _describe(self, event: Event) -> str | None:
        if isinstance(event, ExperimentStarted):
            reps = f"{event.repetitions} repetition{'s' if event.repetitions != 1 else ''}"
            return f"{event.scenario}: {event.title} ({reps})"
        if isinstance(event, RepetitionStarted):
            self._repetition = f"rep {event.number}/{event.of or '?'}  "
            return None
        if isinstance(event, DiskStarted):
            return f"{self._repetition}disk {event.disk}"
        if isinstance(event, Phase):
            return f"{self._repetition}{event.name}"
        if isinstance(event, MigrationFinished):
            return f"{self._repetition}{_migration(event)}"
        if isinstance(event, MigrationMeasured):
            return f"{self._repetition}measured {event.source} -> {event.dest}: " + (
                event.network_text()
            )
        if isinstance(event, Note) and event.level != "info":
            return f"{event.level}: {event.text}"
        if isinstance(event, HostState):
            if event.state == "connected":
                self._connected.add(event.host)
            elif event.state in ("disconnected", "failed") and event.host in self._connected:
                return f"{event.host} {event.state}: {event.reason or 'no reason given'}"
            return None
        if isinstance(event, ExperimentFinished):
            return f"finished: {event.status}" + (f" ({event.error})" if event.error else "")
        return None


def _migration(event: MigrationFinished) -> str:
    head = f"migration {event.source} -> {event.dest}: "
    if not event.ok:
        return head + f"FAILED: {event.error or 'no reason given'}"
    parts = ["ok"]
    if event.total_time_ms is not None:
        parts.append(f"{event.total_time_ms / 1000:.2f} s")
    if event.downtime_ms is not None:
        parts.append(f"downtime {event.downtime_ms:g} ms")
    return head + ", ".join(parts)
