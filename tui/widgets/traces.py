"""Live traces: probe samples folded into bounded, time-bucketed series.

A trace is one probe's main value on one host (ping RTT, sysbench events/s, ...).
Samples land in fixed-width time buckets (min, max, sum, count), so adding one is
O(1) at any rate and the history is bounded by time, not by sample count. Drawing
asks for a :class:`TraceView`: the buckets reduced to one point per plot column
(the worst value for latencies, the mean for rates), plus the losses to mark.

No Textual here: this is plain data, tested on its own.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal

from backend.events import Sample

BUCKET_S = 0.2
"""Width of a time bucket: finer than any plot column at a useful history length."""

HISTORY_S = 900.0
"""How far back a trace keeps data (15 minutes)."""

MAX_LOSS_MARKS = 5000

Reduce = Literal["max", "mean"]


@dataclass(frozen=True)
class ProbeLook:
    """How a probe's samples are drawn: which value, its name, and how to reduce it."""

    value_key: str
    label: str
    short: str
    reduce: Reduce
    fallback_keys: tuple[str, ...] = ()


# Values that are counters or settings, never the quantity to plot.
_NOT_A_MEASURE = frozenset(
    {"seq", "ttl", "elapsed_s", "phase", "clients", "lines", "threads", "lat_pct", "late"}
)

PROBE_LOOKS: dict[str, ProbeLook] = {
    "ping": ProbeLook("rtt_ms", "ping RTT", "ping", "max"),
    "sysbench-cpu": ProbeLook("eps", "cpu (sysbench)", "cpu", "mean"),
    "sysbench-memory": ProbeLook("mib_per_s", "memory (sysbench)", "mem", "mean"),
    "dbench": ProbeLook("mb_per_s_1s", "disk (dbench)", "disk", "mean", ("mb_per_s",)),
    "build": ProbeLook("files_per_s", "build", "build", "mean"),
    "dirtier": ProbeLook("mib_per_s", "RAM dirtier", "dirty", "mean"),
}


def look_for(probe: str, sample: Sample) -> ProbeLook | None:
    """The look of ``probe``; for a probe we do not know, its first measured value."""
    known = PROBE_LOOKS.get(probe)
    if known is not None:
        return known
    for key, value in sample.values.items():
        if value is not None and key not in _NOT_A_MEASURE and key != "summary":
            return ProbeLook(key, f"{probe} {key}", probe, "mean")
    return None


class _Bucket:
    __slots__ = ("hi", "lo", "n", "start", "total")

    def __init__(self, start: float, value: float) -> None:
        self.start = start
        self.lo = self.hi = self.total = value
        self.n = 1

    def add(self, value: float) -> None:
        if value < self.lo:
            self.lo = value
        if value > self.hi:
            self.hi = value
        self.total += value
        self.n += 1


@dataclass
class TraceView:
    """What one plot draws, in seconds since the session's start (labelled ``m:ss``)."""

    title: str
    unit: str
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    x_range: tuple[float, float] = (0.0, 1.0)
    windows: list[tuple[float, float]] = field(default_factory=list)


TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200)


def clock_label(seconds: float) -> str:
    """Seconds since the session began as ``m:ss`` (``h:mm:ss`` from an hour on)."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_ticks(lo: float, hi: float, most: int) -> tuple[list[float], list[str]]:
    """At most ``most`` ticks on [lo, hi] at a round step, labelled as session time: an
    axis reads 12:30, not 750 (nor 3600 an hour in)."""
    most = max(most, 2)
    span = max(hi - lo, 1e-9)
    step = next((s for s in TICK_STEPS_S if span / s <= most - 1), TICK_STEPS_S[-1])
    first = -(-lo // step) * step  # the first multiple of step at or after lo
    positions = [float(first + i * step) for i in range(int((hi - first) // step) + 1)]
    return positions, [clock_label(x) for x in positions]


class Trace:
    """One probe value on one host, bucketed in time."""

    def __init__(self, probe: str, host: str, look: ProbeLook) -> None:
        self.probe = probe
        self.host = host
        self.look = look
        self.unit = ""
        self.samples = 0
        self.last_value: float | None = None
        self.last_t: float | None = None
        self._buckets: deque[_Bucket] = deque(maxlen=int(HISTORY_S / BUCKET_S))
        # seq -> time of "no answer yet"; a late reply takes its seq back out.
        self._losses: OrderedDict[float, float] = OrderedDict()
        self._loss_ids = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.probe, self.host)

    @property
    def lost(self) -> int:
        """Losses in the history that no late reply answered."""
        return len(self._losses)

    def add(self, sample: Sample) -> bool:
        """Take one sample; False if it carried nothing to draw (a summary, a marker)."""
        values = sample.values
        if values.get("summary") == 1.0 or sample.t is None:
            return False  # a reading without a time (BusyBox ping) has no place on a time axis
        if values.get("lost") == 1.0:
            self._add_loss(values.get("seq"), sample.t)
            return True
        value = values.get(self.look.value_key)
        key = self.look.value_key
        if value is None:
            for key in self.look.fallback_keys:
                value = values.get(key)
                if value is not None:
                    break
        if value is None:
            return False
        if values.get("late") == 1.0:
            seq = values.get("seq")
            if seq is not None:
                self._losses.pop(seq, None)
        if not self.unit:
            self.unit = sample.unit.get(key, "")
        self.samples += 1
        self.last_value = value
        self.last_t = sample.t
        start = sample.t - sample.t % BUCKET_S
        buckets = self._buckets
        if buckets and buckets[-1].start == start:
            buckets[-1].add(value)
        elif buckets and start < buckets[-1].start:
            self._add_late(start, value)
        else:
            buckets.append(_Bucket(start, value))
        return True

    def _add_late(self, start: float, value: float) -> None:
        # Lines delivered in a burst can be out of order by a bucket or two.
        for bucket in reversed(self._buckets):
            if bucket.start == start:
                bucket.add(value)
                return
            if bucket.start < start:
                return  # older than its neighbours' gap: dropped, too rare to matter

    def _add_loss(self, seq: float | None, t: float) -> None:
        if seq is None:
            self._loss_ids -= 1  # losses without a seq get keys of their own
            seq = self._loss_ids
        self._losses[seq] = t
        while len(self._losses) > MAX_LOSS_MARKS:
            self._losses.popitem(last=False)

    def first_t(self) -> float | None:
        starts = [self._buckets[0].start] if self._buckets else []
        if self._losses:
            starts.append(min(self._losses.values()))
        return min(starts) if starts else None

    def view(
        self,
        t0: float,
        now: float,
        columns: int,
        windows: list[tuple[float, float | None]],
        title: str,
    ) -> TraceView:
        """Reduce the history to at most ``columns`` points over [first sample, now]."""
        first = self.first_t()
        lo = 0.0 if first is None else max(0.0, first - t0)
        hi = max(now - t0, lo + 10.0)
        out = TraceView(title=title, unit=self.unit, x_range=(lo, hi))
        columns = max(columns, 2)
        width = (hi - lo) / columns
        use_max = self.look.reduce == "max"
        column = -1
        agg = 0.0
        total = 0.0
        count = 0
        for bucket in self._buckets:
            x = bucket.start - t0
            c = min(int((x - lo) / width), columns - 1)
            if c != column:
                if count:
                    out.xs.append(lo + (column + 0.5) * width)
                    out.ys.append(agg if use_max else total / count)
                column, agg, total, count = c, bucket.hi, bucket.total, bucket.n
            else:
                agg = max(agg, bucket.hi)
                total += bucket.total
                count += bucket.n
        if count:
            out.xs.append(lo + (column + 0.5) * width)
            out.ys.append(agg if use_max else total / count)
        out.losses = [t - t0 for t in self._losses.values() if t - t0 >= lo]
        for start, end in windows:
            stop = now if end is None else end
            if stop - t0 >= lo:
                out.windows.append((start - t0, stop - t0))
        return out


class TraceStore:
    """Every trace of a session, created as their first samples arrive."""

    def __init__(self) -> None:
        self.traces: dict[tuple[str, str], Trace] = {}

    def add(self, sample: Sample) -> Trace | None:
        """File a sample under its trace; the trace if something drawable changed."""
        key = (sample.probe, sample.host)
        trace = self.traces.get(key)
        if sample.t is None:
            return None  # untimed readings (BusyBox ping) are counted by the report, not drawn
        if trace is None:
            look = look_for(sample.probe, sample)
            if look is None or sample.values.get("summary") == 1.0:
                return None
            trace = self.traces[key] = Trace(sample.probe, sample.host, look)
        return trace if trace.add(sample) else None

    def label(self, trace: Trace, *, short: bool = False) -> str:
        """The trace's label; with its host when another host runs the same probe."""
        name = trace.look.short if short else trace.look.label
        shared = sum(1 for probe, _ in self.traces if probe == trace.probe) > 1
        return f"{name}@{trace.host}" if shared else name
