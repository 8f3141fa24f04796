"""One ping's samples in a session as flat arrays (a few bytes a reading, read in one
pass), and what the ping says over a span: :class:`PingFigures`.

A reading without a time (an imported BusyBox ping, iputils without ``-D``) keeps its
place and its seq: it counts in the whole log's figures, its silences are told in seqs,
and it is in no migration window (when it was sent is not known).

The figures, over the whole log or over one migration's window:

- ``sent``: probes settled in the span (answered or lost); ``received``: answered
  (a late reply counts: the guest answered); ``lost``: reported unanswered and never
  answered; ``lost_pct`` of sent.
- the longest silence: the longest run of lost probes (by how many), from the last
  reply before it to the first reply after it; its duration and start when the
  samples have times, its seqs always.
- the RTT of the replies: median, min and 95th percentile (nearest rank: a value
  ping printed, never interpolated).
"""

from __future__ import annotations

import itertools
import math
import statistics
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from backend.probes import Gap

_REPLY, _LOSS, _OTHER = 0, 1, 2
_NAN = math.nan


@dataclass(frozen=True)
class PingFigures:
    """What one ping says over a span (see the module's docstring)."""

    sent: int
    received: int
    lost: int
    lost_pct: float | None
    silence: Gap | None
    """The longest run of lost probes in the span (None: nothing lost)."""
    silence_to_end: bool
    """No reply came after that run: the ping ended silent."""
    rtt_median_ms: float | None
    rtt_min_ms: float | None
    rtt_p95_ms: float | None


@dataclass(frozen=True)
class PingSummary:
    """One ping (by the host it ran on): the whole log, and each migration's window."""

    host: str
    timed: bool
    """False when no reading has a time: silences are told in seqs only."""
    untimed: int
    """Readings without a time."""
    whole: PingFigures
    windows: tuple[PingFigures | None, ...]
    """One per migration, in order; None where the ping cannot tell (it did not run
    through the window, or its readings have no time)."""


class PingTrace:
    """One ping's samples in stream order, summaries left out, as flat arrays: what a
    sample is, its seq and its time (NaN: none); and of the samples with a round trip,
    the round trip and its time, a late reply's when its probe was sent (the ping's rtt
    series when every reading has a time)."""

    def __init__(self) -> None:
        self.kinds = array("b")
        self.seqs = array("d")
        self.times = array("d")
        self.rtt_times = array("d")
        self.rtts = array("d")
        self.lo = math.inf
        self.hi = -math.inf
        self.untimed = 0
        self.open_gap: Gap | None = None
        """Set by :meth:`gaps`: the last run of losses, when no reply came after it."""

    def add(self, t: float | None, values: Mapping[str, float | None]) -> None:
        # What a sample is, as backend.probes.ping.sample_kind tells it.
        if "lost" in values:
            kind = _LOSS
        elif "dup" in values or "icmp_error" in values:
            kind = _OTHER
        elif "rtt_ms" in values and "seq" in values:
            kind = _REPLY
        else:
            kind = _OTHER
        self.kinds.append(kind)
        self.seqs.append((values.get("seq") or 0.0) if kind != _OTHER else 0.0)
        rtt = values.get("rtt_ms")
        if rtt is not None and math.isfinite(rtt):
            self.rtts.append(rtt)
            # A late reply (printed after ping called its probe unanswered) belongs to
            # when its probe was sent: one printed after a migration measured the
            # migration (the pause, the ARP queue), not what came after it.
            sent = t - rtt / 1000 if t is not None and values.get("late") == 1.0 else t
            self.rtt_times.append(_NAN if sent is None else sent)
        if t is None:
            self.times.append(_NAN)
            self.untimed += 1
            return
        self.times.append(t)
        if t < self.lo:
            self.lo = t
        if t > self.hi:
            self.hi = t

    def rtt_series(self) -> tuple[array[float], array[float]]:
        """(times, round trips) of the replies that have both, in stream order."""
        if not self.untimed:
            return self.rtt_times, self.rtts  # as they are: no copy
        times, rtts = array("d"), array("d")
        for t, rtt in zip(self.rtt_times, self.rtts, strict=True):
            if t == t:  # not NaN
                times.append(t)
                rtts.append(rtt)
        return times, rtts

    def resolution(self) -> float:
        """ping's interval, read from the replies: the median gap between consecutive ones."""
        times = self.rtt_series()[0]
        if not _ascending(times):
            times = array("d", sorted(times))
        steps = array("d", (b - a for a, b in itertools.pairwise(times) if b > a))
        return statistics.median(steps) if steps else 0.0

    def lost(self) -> set[int]:
        """The seqs reported unanswered that never got a reply."""
        kinds, seqs = self.kinds, self.seqs
        reported = {_seq(s) for k, s in zip(kinds, seqs, strict=True) if k == _LOSS}
        if not reported:
            return reported
        answered = {
            seq for k, s in zip(kinds, seqs, strict=True)
            if k == _REPLY and (seq := _seq(s)) in reported
        }  # fmt: skip
        return reported - answered  # a seq reported unanswered that later got a reply is not

    def gaps(self, lost: set[int] | None = None) -> list[Gap]:
        """As :func:`backend.probes.ping.unreachable_gaps` finds them, in one pass more."""
        pending = set(self.lost() if lost is None else lost)
        gaps: list[Gap] = []
        last_reply_t: float | None = None
        run: list[int] = []
        for kind, seq_value, t in zip(self.kinds, self.seqs, self.times, strict=True):
            if kind == _REPLY:
                when = t if t == t else None
                if run:
                    gaps.append(Gap(last_reply_t, when, len(run), min(run), max(run)))
                    run = []
                last_reply_t = when
            elif kind == _LOSS:
                seq = _seq(seq_value)
                if seq in pending:
                    pending.discard(seq)  # a seq counts once even if reported twice
                    run.append(seq)
        self.open_gap = None
        if run:
            self.open_gap = Gap(last_reply_t, None, len(run), min(run), max(run))
            gaps.append(self.open_gap)
        return gaps

    def summary(
        self,
        host: str,
        windows: Sequence[tuple[float, float]],
        resolution: float,
        gaps: Sequence[Gap],
        lost: set[int],
    ) -> PingSummary:
        """The whole log's figures and each window's (``windows``: (start, end) times)."""
        timed = len(self.times) > self.untimed
        whole = self._figures(0, len(self.kinds), lost, list(gaps), self.rtts)
        per_window: list[PingFigures | None] = []
        ordered = (
            timed and not self.untimed and _ascending(self.times) and _ascending(self.rtt_times)
        )
        for start, end in windows:
            if not timed or self.lo > start + resolution or self.hi < end - resolution:
                per_window.append(None)  # this ping did not run through it: it cannot tell
                continue
            lo, hi = start - resolution, end + resolution
            inside = [
                g for g in gaps
                if not ((g.start_t if g.start_t is not None else -math.inf) > hi
                        or (g.end_t if g.end_t is not None else math.inf) < lo)
            ]  # fmt: skip
            if ordered:
                first, last = bisect_left(self.times, start), bisect_right(self.times, end)
                rtts = self.rtts[bisect_left(self.rtt_times, start) :
                                 bisect_right(self.rtt_times, end)]  # fmt: skip
                per_window.append(self._figures(first, last, lost, inside, rtts))
            else:
                per_window.append(self._figures_of(start, end, lost, inside))
        return PingSummary(host, timed, self.untimed, whole, tuple(per_window))

    def _figures(
        self, first: int, last: int, lost: set[int], gaps: list[Gap], rtts: array[float]
    ) -> PingFigures:
        if first == 0 and last == len(self.kinds):  # the whole trace: every lost seq is in it
            return _make(self.kinds.count(_REPLY), len(lost), sorted(rtts), gaps, self.open_gap)
        kinds = self.kinds[first:last]
        lost_here: set[int] = set()
        if lost:
            for kind, seq in zip(kinds, self.seqs[first:last], strict=True):
                if kind == _LOSS and (number := _seq(seq)) in lost:
                    lost_here.add(number)
        return _make(kinds.count(_REPLY), len(lost_here), sorted(rtts), gaps, self.open_gap)

    def _figures_of(self, start: float, end: float, lost: set[int], gaps: list[Gap]) -> PingFigures:
        """:meth:`_figures` of the samples in [start, end] of a trace not in time order."""
        kinds, seqs = self.kinds, self.seqs
        index = [i for i, t in enumerate(self.times) if start <= t <= end]
        received = sum(1 for i in index if kinds[i] == _REPLY)
        lost_here = {
            number for i in index if kinds[i] == _LOSS and (number := _seq(seqs[i])) in lost
        }
        known = sorted(
            r for t, r in zip(self.rtt_times, self.rtts, strict=True) if start <= t <= end
        )
        return _make(received, len(lost_here), known, gaps, self.open_gap)


def _make(
    received: int, lost: int, rtts: list[float], gaps: list[Gap], open_gap: Gap | None
) -> PingFigures:
    sent = received + lost
    """``rtts``: the span's round trips, sorted."""
    silence = max(
        gaps, key=lambda g: (g.lost_count, g.duration_s or 0.0, -g.first_seq), default=None
    )
    median = minimum = p95 = None
    if rtts:
        median = statistics.median(rtts)
        minimum = rtts[0]
        p95 = rtts[max(0, math.ceil(0.95 * len(rtts)) - 1)]  # nearest rank
    return PingFigures(
        sent=sent,
        received=received,
        lost=lost,
        lost_pct=lost / sent * 100 if sent else None,
        silence=silence,
        silence_to_end=silence is not None and silence is open_gap,
        rtt_median_ms=median,
        rtt_min_ms=minimum,
        rtt_p95_ms=p95,
    )


def _seq(value: float) -> int:
    return int(value) if math.isfinite(value) else 0


def _ascending(values: array[float]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(values))
