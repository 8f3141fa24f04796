"""Metrics of a session: pure functions over its events (as :func:`read_session` gives them),
or over a log read a line at a time into :class:`LogData` (samples as flat arrays of numbers,
so a report of millions of readings takes a few bytes each: :func:`analyze_data`).

What a session log holds for these metrics (the experiment runner emits exactly this):

==========================  =================================================================
``experiment.repetition``   :class:`RepetitionStarted` before each repetition (``number`` from
                            1, ``of`` the planned count). Events before the first one (boot,
                            storage set-up) belong to no repetition. A log with none is one
                            repetition.
``experiment.disk``         :class:`DiskStarted` before each arm of a disk comparison
                            (``disk`` = "local" or "iscsi"), inside a repetition.
``phase``                   :class:`~backend.events.Phase` at the start of each part of the
                            timeline: ``warmup``, ``baseline``, ``migrating``, ``between``
                            (between the legs of a round trip), ``after``. A part lasts until
                            the next phase or the end of its repetition.
``migration.progress``      while a migration runs (source, dest, iteration, bytes).
``migration.finished``      when it ends (ok, the hypervisor's total time and downtime).
``sample``                  probe readings from :mod:`backend.probes` parsers; ``t`` None
                            for a reading the tool printed no time for (an imported BusyBox
                            ping): it is in no time series and no window, and counts in
                            its ping's whole-log figures (:mod:`.ping_trace`).
``command.finished``        a failed command becomes a note in the report.
==========================  =================================================================

A migration's window runs from its ``migrating`` phase (or, without one, its first
progress event) to its ``migration.finished``; a window never finished (a log cut
short) runs to the end of its repetition. Samples inside a window are "during";
elsewhere a sample takes the name of its phase.

Per probe metric (see :data:`METRICS` for which values count and which way is
worse): the means in the baseline, during the migrations and after; the change
during vs baseline in %; and the worst 1-second window during a migration vs the
baseline in % (the study's "at the lowest point"). Across repetitions: mean,
standard deviation and a 95 % confidence interval (Student's t, n - 1 degrees of
freedom). Unknown values are None, never guessed.
"""

from __future__ import annotations

import itertools
import math
import shlex
import statistics
from array import array
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.events import (
    CommandFinished,
    DiskStarted,
    Event,
    MigrationFinished,
    MigrationProgress,
    Note,
    Phase,
    RepetitionStarted,
    Sample,
)
from backend.experiments.ping_trace import PingSummary, PingTrace
from backend.probes import PROBES, SUMMARY, Gap, MetricSpec, Probe
from backend.probes.ping import PROBE as PING

__all__ = [
    "METRICS",
    "PHASES",
    "Analysis",
    "DiskRow",
    "LogData",
    "MigrationMetrics",
    "ProbeMetrics",
    "RepetitionMetrics",
    "Series",
    "Stats",
    "Window",
    "analyze",
    "analyze_data",
    "change_pct",
    "stats",
    "t_quantile_975",
]

PHASES = ("warmup", "baseline", "migrating", "between", "after")
"""The phase names the runner uses, in timeline order."""


# --------------------------------------------------------------------------- what counts


Measured = Callable[[Mapping[str, float | None]], bool]


@dataclass(frozen=True)
class _ProbeTable:
    """What the metrics read from the probe registry: each probe's time series
    (``Probe.metrics``, in the registry's order: the table's) and the readings a probe
    says are not measurements (``Probe.measured``: dbench's own warm-up lines)."""

    metrics: tuple[MetricSpec, ...]
    by_probe: Mapping[str, Sequence[MetricSpec]]
    measured: Mapping[str, Measured]

    @classmethod
    def now(cls) -> _ProbeTable:
        metrics = tuple(spec for probe in PROBES.values() for spec in probe.metrics)
        by_probe: dict[str, list[MetricSpec]] = defaultdict(list)
        for spec in metrics:
            by_probe[spec.probe].append(spec)
        measured = {
            kind: probe.measured
            for kind, probe in PROBES.items()
            if type(probe).measured is not Probe.measured
        }
        return cls(metrics, dict(by_probe), measured)


METRICS: tuple[MetricSpec, ...] = _ProbeTable.now().metrics
"""Every probe's time series (``Probe.metrics``), in the registry's order: the table's."""

# ping's samples are a trace (losses, unreachable gaps: :mod:`.ping_trace`); its rtt
# series is read from that trace.
_PING_RTT = PROBES[PING].metrics[0]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class Series:
    """One metric of one probe over time: ``name`` is "probe.key" (or "probe@host.key"
    when the same probe ran on several hosts)."""

    name: str
    spec: MetricSpec
    host: str
    times: array[float]
    """Seconds since the epoch, in time order (a flat array: 8 bytes a reading)."""
    values: array[float]

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        """(t, value) pairs, in time order (built on each call: use times/values for many)."""
        return tuple(zip(self.times, self.values, strict=True))

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class Window:
    """A migration's time span; ``end`` None: it never finished (the log was cut short)."""

    start: float
    end: float | None
    repetition: int


@dataclass(frozen=True)
class MigrationMetrics:
    number: int
    """Which migration of its repetition (1, or 1 and 2 for a round trip)."""
    repetition: int
    source: str | None
    dest: str | None
    started_at: float
    """Seconds since the epoch."""
    finished: bool
    ok: bool | None
    total_s: float | None
    """The hypervisor's total time, else the window measured from the log."""
    downtime_ms: float | None
    """The hypervisor-reported downtime (QEMU has one; xl does not)."""
    unreachable_s: float | None
    """The largest gap between ping replies overlapping the migration (at ping's interval);
    0 when ping ran throughout and lost nothing; None without ping."""
    lost_probes: int | None
    bytes_sent: int | None
    iterations: int | None
    error: str | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProbeMetrics:
    name: str
    spec: MetricSpec
    host: str
    baseline: float | None
    during: float | None
    after: float | None
    during_change_pct: float | None
    worst_change_pct: float | None
    worst_at: float | None
    """Start (seconds since the epoch) of the worst 1-second window."""
    counts: dict[str, int]
    """Points per phase name."""


@dataclass(frozen=True)
class Stats:
    """A metric across repetitions (only the repetitions that have a value count)."""

    values: tuple[float, ...]
    mean: float | None
    std: float | None
    """Sample standard deviation (n - 1); None below 2 values."""
    ci95: tuple[float, float] | None
    """95 % confidence interval of the mean, Student's t; None below 2 values."""

    @property
    def n(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class RepetitionMetrics:
    number: int
    start: float
    end: float
    phases: tuple[tuple[str, float], ...]
    """Its phase changes (name, start), in order."""
    windows: tuple[Window, ...]
    migrations: tuple[MigrationMetrics, ...]
    probes: dict[str, ProbeMetrics]

    def phase_at(self, t: float) -> tuple[str | None, Window | None]:
        """The phase a reading at ``t`` belongs to, and its window when "migrating"."""
        return _locate(self.phases, self.windows, self.end, t)


@dataclass(frozen=True)
class DiskRow:
    """One row of the study's Figure 4.1: a metric's mean on each disk, and the change."""

    name: str
    spec: MetricSpec
    means: dict[str, float | None]
    change_pct: float | None
    """Of the second disk vs the first (iSCSI vs local)."""


@dataclass(frozen=True)
class ToolSummary:
    """What a tool printed at its end (sysbench's totals and latencies, dbench's
    Throughput line), as the probe's parser read it: the figures of a run that has no
    series (an imported summary) and the tool's own word beside miglab's."""

    probe: str
    host: str
    t: float | None
    values: Mapping[str, float | None]


@dataclass(frozen=True)
class Analysis:
    t0: float
    """The session's start (seconds since the epoch): time 0 of reports and plots."""
    end: float
    series: dict[str, Series]
    windows: tuple[Window, ...]
    """Every migration's window, in order."""
    migrations: tuple[MigrationMetrics, ...]
    probes: dict[str, ProbeMetrics]
    """Pooled over every repetition."""
    repetitions: tuple[RepetitionMetrics, ...]
    summary: dict[str, Stats]
    """Across repetitions: "migration1.total_s", "ping.rtt_ms.during_change_pct", ..."""
    disks: tuple[str, ...]
    disk_rows: tuple[DiskRow, ...]
    notes: tuple[str, ...] = field(default=())
    pings: dict[str, PingSummary] = field(default_factory=dict)
    """Per ping (by host): sent, received, lost, the longest silence and the RTT, over
    the whole log and each migration's window."""
    tool_summaries: tuple[ToolSummary, ...] = ()
    """Each probe's end-of-run summary, in log order (ping's own totals beside the figures
    :attr:`pings` counts from its readings; all there is of a ``ping -q``)."""

    def phase_at(self, t: float) -> str | None:
        """The phase a reading at ``t`` belongs to ("migrating" inside a window)."""
        starts = [r.start for r in self.repetitions]
        k = bisect_right(starts, t) - 1
        return self.repetitions[k].phase_at(t)[0] if k >= 0 else None

    def phase_finder(self) -> Callable[[float], str | None]:
        """:meth:`phase_at` for many readings: what it looks up is worked out once."""
        starts = [r.start for r in self.repetitions]
        locators = [
            _Locator(_Segment(r.number, r.start, r.end, [], list(r.phases), list(r.windows)), {})
            for r in self.repetitions
        ]

        def phase_at(t: float) -> str | None:
            k = bisect_right(starts, t) - 1
            return locators[k].locate(t)[0] if k >= 0 else None

        return phase_at


# --------------------------------------------------------------------------- statistics

# Student's t, two-sided 95 % (the 0.975 quantile), by degrees of freedom.
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
    2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
    2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
    2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip
_T975_TAIL = ((30, 2.042272), (40, 2.021075), (60, 2.000298), (120, 1.979930))
_Z975 = 1.959964


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom.

    Exact (6 decimals) up to 30; beyond, interpolated linearly in 1/df between
    40, 60, 120 and infinity (the normal's 1.959964), within 1e-4 of the true value.
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    if df <= len(_T975):
        return _T975[df - 1]
    points = [*((1 / d, t) for d, t in _T975_TAIL), (0.0, _Z975)]
    x = 1 / df
    for (x0, t0), (x1, t1) in itertools.pairwise(points):
        if x1 <= x <= x0:
            return t1 + (t0 - t1) * (x - x1) / (x0 - x1)
    return _Z975  # unreachable: x is within (0, 1/30)


def stats(values: Iterable[float | None]) -> Stats:
    """Mean, sample standard deviation and 95 % CI of the values that are known."""
    known = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    if not known:
        return Stats((), None, None, None)
    mean = statistics.fmean(known)
    if len(known) < 2:
        return Stats(known, mean, None, None)
    std = statistics.stdev(known)
    half = t_quantile_975(len(known) - 1) * std / math.sqrt(len(known))
    return Stats(known, mean, std, (mean - half, mean + half))


def change_pct(value: float | None, reference: float | None) -> float | None:
    """(value - reference) / |reference| in %; None when either is unknown or reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return (value - reference) / abs(reference) * 100.0


def _mean(values: Sequence[float]) -> float | None:  # fmean: fsum, exact whatever the order
    return statistics.fmean(values) if values else None


# --------------------------------------------------------------------------- the timeline


@dataclass
class _Segment:
    """A repetition's events and what the timeline says about them."""

    number: int
    start: float
    end: float
    events: list[Event]
    phases: list[tuple[str, float]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    migrations: list[MigrationMetrics] = field(default_factory=list)


def _segments(events: Sequence[Event], end: float, first: float) -> list[_Segment]:
    """Split the timeline at each RepetitionStarted; without one, the whole log is
    repetition 1, from ``first``: the earliest event of all (not the first logged: a
    parser may date a reading before the event logged ahead of it)."""
    starts = [i for i, e in enumerate(events) if isinstance(e, RepetitionStarted)]
    if not starts:
        return [_Segment(1, first, end, list(events))]
    segments: list[_Segment] = []
    for k, i in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else len(events)
        marker = events[i]
        assert isinstance(marker, RepetitionStarted)
        seg_end = events[stop].t if stop < len(events) else end
        segments.append(_Segment(marker.number, marker.t, seg_end, list(events[i:stop])))
    return segments


def _locate(
    phases: Sequence[tuple[str, float]], windows: Sequence[Window], end: float, t: float
) -> tuple[str | None, Window | None]:
    """(phase, window) of a reading at ``t`` in a repetition with these phases and windows."""
    for window in windows:
        if window.start <= t <= (window.end if window.end is not None else end):
            return "migrating", window
    return _phase_by_spans(phases, windows, t, end), None


def _phase_by_spans(
    phases: Sequence[tuple[str, float]], windows: Sequence[Window], t: float, end: float
) -> str | None:
    if phases:
        starts = [start for _, start in phases]
        i = bisect_right(starts, t) - 1
        if i < 0:
            return None  # before the timeline began: set-up
        name = phases[i][0]
        # A "migrating" phase outside any window: neither before nor during; not counted.
        return None if name == "migrating" else name
    # No phases (an imported log): everything but the windows is baseline / between / after.
    if not windows:
        return "baseline"
    if t < windows[0].start:
        return "baseline"
    last_end = windows[-1].end if windows[-1].end is not None else end
    return "after" if t > last_end else "between"


class _Pending:
    """A migration being read from the log."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.source: str | None = None
        self.dest: str | None = None
        self.iteration: int | None = None
        self.transferred: int | None = None

    def progress(self, event: MigrationProgress) -> None:
        self.source, self.dest = event.source, event.dest
        if event.iteration is not None:
            self.iteration = max(self.iteration or 0, event.iteration)
        if event.transferred_bytes is not None:
            self.transferred = event.transferred_bytes


def _read_timeline(segment: _Segment) -> list[tuple[_Pending, MigrationFinished | None]]:
    """Fill in the segment's phases and windows; return its migrations' starts and ends."""
    found: list[tuple[_Pending, MigrationFinished | None]] = []
    pending: _Pending | None = None
    for event in segment.events:
        if isinstance(event, Phase):
            segment.phases.append((event.name, event.t))
            if event.name == "migrating" and pending is None:
                pending = _Pending(event.t)
        elif isinstance(event, MigrationProgress):
            if pending is None:
                pending = _Pending(event.t)
            pending.progress(event)
        elif isinstance(event, MigrationFinished):
            if pending is None:  # no phase, no progress: the hypervisor's total says when
                total = (event.total_time_ms or 0.0) / 1000
                pending = _Pending(event.t - total)
            found.append((pending, event))
            pending = None
    if pending is not None:
        found.append((pending, None))
    for pending, finished in found:
        end = finished.t if finished is not None else None
        segment.windows.append(Window(pending.start, end, segment.number))
    return found


def _migration(
    number: int,
    segment: _Segment,
    pending: _Pending,
    finished: MigrationFinished | None,
    pings: dict[str, _Ping],
) -> MigrationMetrics:
    window = segment.windows[number - 1]
    notes: list[str] = []
    total_s: float | None = None
    if finished is not None:
        if finished.total_time_ms is not None:
            total_s = finished.total_time_ms / 1000
        elif window.end is not None and window.end > window.start:
            total_s = window.end - window.start
        elif window.end is not None:
            # Every event at one instant: output with no timestamps (an imported xl
            # transcript). No migration takes no time, so its length is unknown, not 0.
            notes.append("the migration's events carry no times: its length is unknown")
    else:
        notes.append("the migration did not finish in this log")
    bytes_sent = pending.transferred
    iterations = pending.iteration
    if finished is not None:
        if finished.transferred_bytes is not None:
            bytes_sent = finished.transferred_bytes
        if finished.iterations is not None:
            iterations = finished.iterations
    unreachable, lost, ping_notes = _unreachable(window, segment.end, pings)
    notes.extend(ping_notes)
    return MigrationMetrics(
        number=number,
        repetition=segment.number,
        source=finished.source if finished is not None else pending.source,
        dest=finished.dest if finished is not None else pending.dest,
        started_at=window.start,
        finished=finished is not None,
        ok=finished.ok if finished is not None else None,
        total_s=total_s,
        downtime_ms=finished.downtime_ms if finished is not None else None,
        unreachable_s=unreachable,
        lost_probes=lost,
        bytes_sent=bytes_sent,
        iterations=iterations,
        error=finished.error if finished is not None else None,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- ping


def _ascending(values: array[float]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(values))


@dataclass(frozen=True)
class _Ping:
    """What the unreachable time needs of one ping, worked out once (not per migration)."""

    resolution: float
    lo: float
    hi: float
    gaps: list[Gap]


def _unreachable(
    window: Window, segment_end: float, pings: dict[str, _Ping]
) -> tuple[float | None, int | None, list[str]]:
    """(unreachable_s, lost_probes, notes) of one window, over every ping that covered it."""
    best: tuple[float, int] | None = None
    notes: list[str] = []
    unknown = False
    end = window.end if window.end is not None else segment_end
    for host, ping in pings.items():
        tolerance = ping.resolution
        lo, hi = window.start - tolerance, end + tolerance
        if ping.lo > window.start + tolerance or ping.hi < end - tolerance:
            continue  # this ping did not run through the window: it cannot tell
        longest, lost = 0.0, 0
        for gap in ping.gaps:
            gap_start = gap.start_t if gap.start_t is not None else -math.inf
            gap_end = gap.end_t if gap.end_t is not None else math.inf
            if gap_start > hi or gap_end < lo:
                continue
            lost += gap.lost_count
            if gap.duration_s is None:
                unknown = True
                notes.append(
                    f"ping from {host}: no reply after the last one before the loss "
                    "until the end of the log"
                    if gap.end_t is None
                    else f"ping from {host}: no reply from its start until the migration"
                )
            else:
                longest = max(longest, gap.duration_s)
        if best is None or (longest, lost) > best:
            best = (longest, lost)
    if best is None:
        return None, None, notes
    return (None if unknown else best[0]), best[1], notes


# --------------------------------------------------------------------------- reading

# The events the timeline, the notes and the disk marks are made of; other kinds
# (command output, host states...) count only for the session's time span.
_TIMELINE = (
    RepetitionStarted,
    DiskStarted,
    Phase,
    MigrationProgress,
    MigrationFinished,
    CommandFinished,
    Note,
)


class LogData:
    """A session's events as the metrics need them, fed one at a time (:meth:`add`, or
    :meth:`add_record` for a log line's JSON object): the few timeline events as they are,
    the many samples as flat arrays, so the memory a log takes is a few bytes a reading."""

    def __init__(self) -> None:
        self._probes = _ProbeTable.now()  # the probes registered when the reading starts
        self.timeline: list[Event] = []
        self.pings: dict[str, PingTrace] = {}
        self.points: dict[tuple[MetricSpec, str], tuple[array[float], array[float]]] = {}
        self.count = 0
        self.t_min = math.inf
        self.t_max = -math.inf
        self.sample_hosts: dict[str, set[str]] = {}
        """Probe -> the hosts it ran on (of the samples that are readings, not summaries)."""
        self.samples_in_order = True
        """Whether those samples came in time order (the csv then needs no sort)."""
        self._last_sample_t = -math.inf
        self._last_source = ("", "")
        self.tool_summaries: list[ToolSummary] = []

    def add(self, event: Event) -> None:
        self._time(event.t)
        if isinstance(event, Sample):
            self._sample(event.t, event.probe, event.host, event.values)
        elif isinstance(event, _TIMELINE):
            self.timeline.append(event)

    def add_plain_sample(self, data: dict[str, Any]) -> bool:
        """A log line's object, if it is a sample that plainly fits the Sample model
        (numbers where numbers go): read without building the model. False for anything
        else: make it an event (``parse_event``) and :meth:`add` that."""
        if data.get("kind") != "sample":
            return False
        sample = plain_sample(data)
        if sample is None:
            return False
        t, probe, host, values = sample
        self._time(t)
        self._sample(t, probe, host, values)
        return True

    def _time(self, t: float | None) -> None:
        self.count += 1
        if t is None:  # a reading the tool gave no time: the span is the timed events'
            return
        if t < self.t_min:
            self.t_min = t
        if t > self.t_max:
            self.t_max = t

    def _sample(
        self, t: float | None, probe: str, host: str, values: Mapping[str, float | None]
    ) -> None:
        if values.get(SUMMARY) != 1.0:  # what the csv shows
            if (probe, host) != self._last_source:
                self.sample_hosts.setdefault(probe, set()).add(host)
                self._last_source = (probe, host)
            if t is not None:
                if t < self._last_sample_t:
                    self.samples_in_order = False
                self._last_sample_t = t
        if SUMMARY in values:  # an end-of-run summary is no time point
            self.tool_summaries.append(ToolSummary(probe, host, t, dict(values)))
            return
        if probe == PING:  # its rtt series is read from the trace (kept once)
            trace = self.pings.get(host)
            if trace is None:
                trace = self.pings[host] = PingTrace()
            trace.add(t, values)
            return
        specs = self._probes.by_probe.get(probe)
        if not specs or t is None:  # a reading without a time is no point of a series
            return
        measured = self._probes.measured.get(probe)
        if measured is not None and not measured(values):
            return
        for spec in specs:
            value = values.get(spec.key)
            if value is not None and math.isfinite(value):
                found = self.points.get((spec, host))
                if found is None:
                    found = self.points[(spec, host)] = (array("d"), array("d"))
                found[0].append(t)
                found[1].append(float(value))

    def series(self) -> dict[str, Series]:
        points = dict(self.points)
        for host, trace in self.pings.items():
            rtt = trace.rtt_series()
            if len(rtt[0]):
                points[(_PING_RTT, host)] = rtt
        hosts: dict[str, set[str]] = defaultdict(set)
        for spec, host in points:
            hosts[spec.probe].add(host)
        out: dict[str, Series] = {}
        for spec in self._probes.metrics:  # a stable order: the table's
            for host in sorted(hosts.get(spec.probe, ())):
                if (spec, host) not in points:
                    continue
                probe = spec.probe if len(hosts[spec.probe]) == 1 else f"{spec.probe}@{host}"
                name = f"{probe}.{spec.key}"
                times, values = points[(spec, host)]
                if not _ascending(times):  # in time order; equal times keep their log order
                    order = sorted(range(len(times)), key=times.__getitem__)
                    times = array("d", (times[i] for i in order))
                    values = array("d", (values[i] for i in order))
                out[name] = Series(name, spec, host, times, values)
        return out


_plain_unit: list[dict[str, str]] = [{}]
"""The last sample's units that were found plain (a dict of strings)."""


def plain_sample(
    data: dict[str, Any],
) -> tuple[float | None, str, str, dict[str, float | None]] | None:
    """(t, probe, host, values) of a sample record that fits the Sample model as it is
    (t None: a reading without a time); None when it needs the model's own judgement."""
    t, probe, host, values = data.get("t"), data.get("probe"), data.get("host"), data.get("values")
    if t is not None and type(t) is not float and type(t) is not int:  # bool: the model's call
        return None
    if type(probe) is not str or type(host) is not str or type(values) is not dict:
        return None
    if "unit" in data:
        unit = data["unit"]
        if type(unit) is not dict:
            return None
        if unit != _plain_unit[0]:  # most samples carry the same units as the one before
            if not all(type(k) is str and type(v) is str for k, v in unit.items()):
                return None
            _plain_unit[0] = unit
    plain = values
    for key, value in values.items():
        kind = type(value)
        if kind is float or value is None:
            continue
        if kind is not int:
            return None
        try:
            converted = float(value)
        except OverflowError:
            return None
        if plain is values:
            plain = dict(values)
        plain[key] = converted
    return (float(t) if t is not None else None), probe, host, plain


# --------------------------------------------------------------------------- probes


class _ProbeValues:
    """The points of one series that count in one result (a repetition, or all of them)."""

    __slots__ = ("buckets", "by_phase")

    def __init__(self) -> None:
        self.by_phase: dict[str, array[float]] = {}
        self.buckets: dict[tuple[int, int], list[float]] = {}

    def add(
        self, t: float, value: float, phase: str | None, window: int | None, start: float
    ) -> None:
        """``start``: the start of the point's migration window (when ``window``)."""
        if phase is None:
            return
        values = self.by_phase.get(phase)
        if values is None:
            values = self.by_phase[phase] = array("d")
        values.append(value)
        if window is not None:
            second = int((t - start) // 1.0)
            bucket = self.buckets.get((window, second))
            if bucket is None:
                bucket = self.buckets[(window, second)] = []
            bucket.append(value)

    def metrics(self, series: Series, windows: Sequence[Window]) -> ProbeMetrics:
        by_phase = self.by_phase
        baseline = _mean(by_phase.get("baseline", ()))
        during = _mean(by_phase.get("migrating", ()))
        worst: float | None = None
        worst_at: float | None = None
        for (window, second), values in sorted(self.buckets.items()):
            mean = statistics.fmean(values)
            if (
                worst is None
                or (series.spec.higher_is_better and mean < worst)
                or (not series.spec.higher_is_better and mean > worst)
            ):
                worst, worst_at = mean, windows[window].start + second
        return ProbeMetrics(
            name=series.name,
            spec=series.spec,
            host=series.host,
            baseline=baseline,
            during=during,
            after=_mean(by_phase.get("after", ())),
            during_change_pct=change_pct(during, baseline),
            worst_change_pct=change_pct(worst, baseline),
            worst_at=worst_at,
            counts={name: len(values) for name, values in by_phase.items()},
        )


class _Locator:
    """The phase and window of readings in one repetition (see :func:`_locate`)."""

    def __init__(self, segment: _Segment, window_index: dict[int, int]) -> None:
        self.segment = segment
        self.spans = [
            (w.start, w.end if w.end is not None else segment.end, window_index.get(id(w), -1))
            for w in segment.windows
        ]
        self.starts = [start for _, start in segment.phases]

    def locate(self, t: float) -> tuple[str | None, int | None]:
        for start, end, index in self.spans:
            if start <= t <= end:
                return "migrating", index
        segment = self.segment
        if self.starts:
            i = bisect_right(self.starts, t) - 1
            if i < 0:
                return None, None  # before the timeline began: set-up
            name = segment.phases[i][0]
            # A "migrating" phase outside any window: neither before nor during; not counted.
            return (None if name == "migrating" else name), None
        return _phase_by_spans(segment.phases, segment.windows, t, segment.end), None


# --------------------------------------------------------------------------- analysis


def _notes(events: Sequence[Event]) -> list[str]:
    notes: list[str] = []
    for event in events:
        if isinstance(event, CommandFinished):
            if event.failure == "cancelled":
                continue  # the runner stops probes that way at the end of a run
            if event.failure is not None or event.exit_status not in (0, None):
                why = event.failure or f"exit status {event.exit_status}"
                command = shlex.join(event.argv)
                if len(command) > 60:
                    command = command[:57] + "..."
                notes.append(f"{event.host}: {command}: {why}")
        elif isinstance(event, Note) and event.level != "info":
            notes.append(f"{event.level}: {event.text}")
        elif isinstance(event, MigrationFinished) and not event.ok:
            why = event.error or "no reason given"
            notes.append(f"migration {event.source} -> {event.dest} failed: {why}")
    return notes


def analyze(events: Iterable[Event], *, t0: float | None = None) -> Analysis:
    """Every metric of a session's events (in log order). ``t0``: the session's start."""
    data = LogData()
    for event in events:
        data.add(event)
    return analyze_data(data, t0=t0)


def analyze_data(data: LogData, *, t0: float | None = None) -> Analysis:
    """Every metric of a session read into :class:`LogData`. ``t0``: the session's start."""
    timed = data.t_min <= data.t_max  # some event has a time (an imported ping may have none)
    end = data.t_max if timed else (t0 or 0.0)
    start = t0 if t0 is not None else (data.t_min if timed else 0.0)
    events = data.timeline
    segments = _segments(events, end, data.t_min if timed else end)
    lost = {host: trace.lost() for host, trace in data.pings.items()}
    pings = {
        host: _Ping(trace.resolution(), trace.lo, trace.hi, trace.gaps(lost[host]))
        for host, trace in data.pings.items()
    }
    for segment in segments:
        found = _read_timeline(segment)
        for number, (pending, finished) in enumerate(found, start=1):
            segment.migrations.append(_migration(number, segment, pending, finished, pings))
    windows = [w for segment in segments for w in segment.windows]
    spans = [
        (w.start, w.end if w.end is not None else segment.end)
        for segment in segments
        for w in segment.windows
    ]
    ping_summaries = {
        host: trace.summary(host, spans, pings[host].resolution, pings[host].gaps, lost[host])
        for host, trace in sorted(data.pings.items())
    }
    window_index = {id(w): i for i, w in enumerate(windows)}
    locators = [_Locator(segment, window_index) for segment in segments]

    # Each point of each series: its repetition, phase and window, into its results.
    series = data.series()
    seg_starts = [s.start for s in segments]
    marks = [(e.t, e.disk) for e in events if isinstance(e, DiskStarted)]
    disk_starts = [t for t, _ in marks]
    pooled: dict[str, ProbeMetrics] = {}
    per_repetition: list[dict[str, ProbeMetrics]] = [{} for _ in segments]
    disk_values: dict[str, dict[str, array[float]]] = {}
    for name, one in series.items():
        everything = _ProbeValues()
        mine: dict[int, _ProbeValues] = {}
        on_disk: dict[str, array[float]] = defaultdict(lambda: array("d"))
        for t, value in zip(one.times, one.values, strict=True):
            k = bisect_right(seg_starts, t) - 1
            if k < 0:  # before the first repetition: set-up, part of no result
                continue
            phase, index = locators[k].locate(t)
            at = windows[index].start if index is not None else 0.0
            repetition = mine.get(k)
            if repetition is None:
                repetition = mine[k] = _ProbeValues()
            repetition.add(t, value, phase, index, at)
            everything.add(t, value, phase, index, at)
            if marks and phase == "baseline":
                i = bisect_right(disk_starts, t) - 1
                if i >= 0:
                    on_disk[marks[i][1]].append(value)
        for k, values in sorted(mine.items()):
            per_repetition[k][name] = values.metrics(one, windows)
        pooled[name] = everything.metrics(one, windows)
        disk_values[name] = on_disk

    repetitions = [
        RepetitionMetrics(
            number=segment.number,
            start=segment.start,
            end=segment.end,
            phases=tuple(segment.phases),
            windows=tuple(segment.windows),
            migrations=tuple(segment.migrations),
            probes=per_repetition[k],
        )
        for k, segment in enumerate(segments)
    ]
    disks, disk_rows = _disk_rows(marks, series, disk_values)
    return Analysis(
        t0=start,
        end=end,
        series=series,
        windows=tuple(windows),
        migrations=tuple(m for segment in segments for m in segment.migrations),
        probes=pooled,
        repetitions=tuple(repetitions),
        summary=_summary(repetitions),
        disks=disks,
        disk_rows=disk_rows,
        tool_summaries=tuple(data.tool_summaries),
        notes=tuple(_notes(events)),
        pings=ping_summaries,
    )


def _disk_rows(
    marks: Sequence[tuple[float, str]],
    series: dict[str, Series],
    values: dict[str, dict[str, array[float]]],
) -> tuple[tuple[str, ...], tuple[DiskRow, ...]]:
    """``values``: per series, per disk, its baseline readings while that disk was in use."""
    if not marks:
        return (), ()
    seen = list(dict.fromkeys(disk for _, disk in marks))
    # The study's order: the local disk is the reference the iSCSI disk is compared with.
    order = ("local", "iscsi")
    disks = tuple(sorted(seen, key=lambda d: order.index(d) if d in order else len(order)))
    rows: list[DiskRow] = []
    for name, one in series.items():
        means = {disk: _mean(values[name].get(disk, ())) for disk in disks}
        change = change_pct(means[disks[1]], means[disks[0]]) if len(disks) >= 2 else None
        rows.append(DiskRow(name, one.spec, means, change))
    return disks, tuple(rows)


MIGRATION_FIELDS = ("total_s", "downtime_ms", "unreachable_s", "lost_probes")
PROBE_FIELDS = ("baseline", "during", "after", "during_change_pct", "worst_change_pct")


def _summary(repetitions: Sequence[RepetitionMetrics]) -> dict[str, Stats]:
    """Each metric across repetitions; a round trip's legs are kept apart (they may differ)."""
    values: dict[str, list[float | None]] = defaultdict(list)
    for repetition in repetitions:
        for migration in repetition.migrations:
            for name in MIGRATION_FIELDS:
                value = getattr(migration, name)
                values[f"migration{migration.number}.{name}"].append(value)
        for probe in repetition.probes.values():
            for name in PROBE_FIELDS:
                values[f"{probe.name}.{name}"].append(getattr(probe, name))
    out = {name: stats(known) for name, known in values.items()}
    return {name: result for name, result in out.items() if result.n}
