"""ping (iputils, BusyBox): ``ping -D -O -n -i INTERVAL -W 1 [-c N] ADDR``.

Formats read (each checked on a capture in tests/data/probes/):

- iputils 20221126 (Debian 12) and every iputils that prints ``icmp_seq=``,
  with or without ``-D``'s ``[seconds.micros]`` and ``-O``'s ``no answer yet``
  lines; summary ``rtt min/avg/max/mdev = ...``.
- the iputils of about 2010-2012 (e.g. Debian 7, Ubuntu 12.04) whose replies
  say ``icmp_req=`` instead of ``icmp_seq=``.
- BusyBox ping (1.35; its format is unchanged since 1.x): ``seq=`` replies
  counted from 0, ``N packets transmitted, M packets received``, ``round-trip
  min/avg/max = ...`` (no mdev: ``rtt_mdev_ms`` is None).

Whitespace mangled by copy and paste (tabs, runs of spaces, CRLF, indented
lines) reads the same. A line of none of these forms is skipped and counted in
:attr:`PingParser.lines_not_understood`; a value not printed is None.

Every sample has probe ``"ping"``; its values keys tell what it is:

=========  ==============================================================
reply      ``seq``, ``rtt_ms``, ``ttl``; plus ``late: 1.0`` when ``-O`` had
           already reported that seq unanswered (the reply came after the
           next probe was sent, e.g. queued behind ARP)
loss       ``seq``, ``rtt_ms: None``, ``lost: 1.0``: no answer when ping sent
           the next probe (``-O``), or a seq skipped by the replies, or the
           run's unanswered last seqs (from the summary; every seq when the
           summary says none was received)
dup        ``seq``, ``dup: 1.0``: a duplicate reply, not a second reply
error      ``seq``, ``icmp_error: 1.0``: ``From X icmp_seq=N Destination Host
           Unreachable`` and other ICMP errors (a marker, not a loss: the
           seq's loss comes from its ``-O`` line, so it is never counted twice)
summary    ``summary: 1.0``, ``transmitted``, ``received``, ``loss_pct``, ...
=========  ==============================================================

``seq`` is unwrapped: ping's icmp_seq is 16 bits and wraps after 65535 (11 min
at ``-i 0.01``), so the parser counts on past it (65536, 65537, ...) and a seq
names one probe for the whole run; ping printed ``seq % 65536``.

A loss sample means "no answer yet"; only a seq that never gets a reply is lost.
:func:`lost_seqs` and :func:`unreachable_gaps` make that reconciliation.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from backend.events import Sample
from backend.probes.base import (
    PLACEHOLDER_ADDRESS,
    SUMMARY,
    Clock,
    LineParser,
    MetricSpec,
    Options,
    Probe,
    RunContext,
    SampleMaker,
    positive_int,
    seconds_arg,
)

PROBE = "ping"

UNITS: dict[str, str] = {
    "rtt_ms": "ms",
    "time_ms": "ms",
    "loss_pct": "%",
    "rtt_min_ms": "ms",
    "rtt_avg_ms": "ms",
    "rtt_max_ms": "ms",
    "rtt_mdev_ms": "ms",
    "ipg_ms": "ms",
    "ewma_ms": "ms",
}

SEQ_MODULO = 65536

# ``-D`` prefixes "[seconds.micros] " (gettimeofday); without -D there is none.
_TS = r"(?:\[(?P<ts>\d+\.\d+)\] )?"
# iputils: icmp_seq= (icmp_req= in those of about 2010-2012); BusyBox: seq=.
_SEQ = r"(?P<field>icmp_seq|icmp_req|seq)=(?P<seq>\d+)"
_REPLY = re.compile(_TS + r"\d+ bytes from (?P<src>.+?): " + _SEQ + r"(?P<rest>.*)$")
_TTL = re.compile(r" ttl=(\d+)")
_TIME = re.compile(r" time=(\d+(?:\.\d+)?) ms")
_NO_ANSWER = re.compile(_TS + r"no answer yet for icmp_seq=(?P<seq>\d+)$")
# "From 198.18.7.1 icmp_seq=6 Destination Host Unreachable"; names come with " (addr)".
_ICMP_ERROR = re.compile(_TS + r"From (?P<src>\S+?):?(?: \([^)]*\))? " + _SEQ + r" (?P<msg>.+)$")
# iputils "PING a (b) 56(84) bytes of data."; BusyBox "PING a (b): 56 data bytes".
_HEADER = re.compile(r"PING (?P<target>\S+?)[ (]")
_BUSYBOX_HEADER = re.compile(r"PING \S+ \([^)]*\): \d+ data bytes$")
_STATS_TITLE = re.compile(r"--- .* ping statistics ---$")
# ping's own diagnostics ("ping: sendmsg: Network is unreachable", -v's first line).
_DIAGNOSTIC = re.compile(r"ping: |WARNING: |ai->ai_family: ")
_TOTALS = re.compile(
    r"(?P<tx>\d+) packets transmitted, (?P<rx>\d+) (?P<bb>packets )?received(?P<rest>.*)$"
)
_RTT = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
_BUSYBOX_RTT = re.compile(r"round-trip min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms")
_PIPE = re.compile(r"(?:^|, )pipe (\d+)")
_IPG = re.compile(r"ipg/ewma ([\d.]+)/([\d.]+) ms")


def ping_command(
    address: str,
    *,
    interval_s: float = 0.2,
    count: int | None = None,
    duration_s: float | None = None,
    reply_timeout_s: int = 1,
    family: Literal[4, 6] | None = None,
    program: str = "ping",
) -> list[str]:
    """The argv of a timestamped (-D), loss-reporting (-O), numeric (-n) ping.

    ``interval_s`` below 0.2 s is accepted down to 0.001 s: root (and, from
    iputils 20210722, anyone down to 0.002 s) may ping that fast; older iputils
    refuses below 0.2 s for non-root users, which the run then reports.

    ``duration_s`` bounds the run as a count of probes (``-c``), never as ``-w``: with
    a deadline, iputils ping exits at the first ICMP error ("Destination Host
    Unreachable"), which ends the trace exactly while the guest is unreachable (seen
    here: ``-w 8`` exited after 3 s; ``-c 40`` went on through the errors).
    """
    if not address or address.startswith("-") or any(c.isspace() for c in address):
        raise ValueError(f"not a ping destination: {address!r}")
    if not 0.001 <= interval_s <= 3600:
        # ping keeps whole milliseconds; below 1 ms it would flood.
        raise ValueError(f"interval_s must be within 0.001..3600, got {interval_s!r}")
    argv = [program, "-D", "-O", "-n", "-i", seconds_arg(interval_s)]
    argv += ["-W", str(positive_int("reply_timeout_s", reply_timeout_s))]
    if count is not None and duration_s is not None:
        raise ValueError("give count or duration_s, not both")
    if duration_s is not None:
        if not 0 < duration_s < math.inf:
            raise ValueError(f"duration_s must be a positive number, got {duration_s!r}")
        count = max(1, math.ceil(duration_s / interval_s))
    if count is not None:
        argv += ["-c", str(positive_int("count", count))]
    if family is not None:
        if family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, got {family!r}")
        argv.append(f"-{family}")
    argv.append(address)
    return argv


class PingParser:
    """Incremental parser of ``ping -D -O`` output (also copes without -D / -O).

    A line without ``-D``'s timestamp is timed by ``clock`` (live: when the line arrived);
    with ``clock=None`` (an import: when it arrived is not known) its sample has no time
    (``t`` None), never one made up: BusyBox ping and iputils without -D print none, and
    ping's interval is not in its output."""

    def __init__(self, host: str, *, probe: str = PROBE, clock: Clock | None = time.time) -> None:
        self._make = SampleMaker(probe, host, UNITS)
        self._clock = clock
        self.target: str | None = None
        # Highest seq already given a reply or loss sample: lower ones are settled.
        self._settled: int | None = None
        # Highest seq seen on any line: the reference for unwrapping.
        self._ref: int | None = None
        self._last_t: float | None = None
        self._totals: dict[str, float | None] | None = None
        self._summary_done = False
        # BusyBox counts seqs from 0, iputils from 1.
        self._first_seq = 1
        # The header was read: the stream starts with the run's first seq.
        self._from_start = False
        self.lines_not_understood = 0
        """Lines of no known form: skipped, never raised on."""

    # -- feeding -------------------------------------------------------------

    def feed(self, line: str) -> list[Sample]:
        # Pasted from a terminal: tabs for spaces, runs of spaces, CRLF, indents.
        line = " ".join(line.split())
        if self._totals is not None:
            # ping's statistics end with one more line: rtt / pipe / ipg, or empty.
            return self._emit_summary(line)
        m = _REPLY.match(line)
        if m:
            return self._reply(m)
        m = _NO_ANSWER.match(line)
        if m:
            return self._no_answer(m)
        m = _ICMP_ERROR.match(line)
        if m:
            seq = self._unwrap(int(m["seq"]))
            return [self._make(self._time(m["ts"]), {"seq": seq, "icmp_error": 1.0})]
        m = _TOTALS.match(line)
        if m:
            if m["bb"]:
                self._first_seq = 0
            self._totals = _totals(m)
            return []
        m = _HEADER.match(line)
        if m:
            if self.target is None:
                self.target = m["target"]
            if _BUSYBOX_HEADER.match(line):
                self._first_seq = 0
            self._from_start = self._settled is None
            return []
        if not line or _STATS_TITLE.match(line) or _DIAGNOSTIC.match(line):
            return []  # nothing to measure
        self.lines_not_understood += 1
        return []

    def finish(self) -> list[Sample]:
        if self._totals is not None:
            return self._emit_summary("")
        return []

    # -- line kinds ------------------------------------------------------------

    def _reply(self, m: re.Match[str]) -> list[Sample]:
        rest = m["rest"]
        if "(BAD CHECKSUM!)" in rest:
            return []  # ping does not count it as received either
        if m["field"] == "seq":
            self._first_seq = 0
        t = self._time(m["ts"])
        seq = self._unwrap(int(m["seq"]))
        if "(DUP!)" in rest:
            return [self._make(t, {"seq": seq, "dup": 1.0})]
        # At or below the settled mark and not a DUP: -O reported it unanswered.
        late = self._settled is not None and seq <= self._settled
        out = [] if late else self._settle_up_to(seq, t)
        ttl = _TTL.search(rest)
        rtt = _TIME.search(rest)
        values: dict[str, float | None] = {
            "seq": seq,
            "rtt_ms": float(rtt[1]) if rtt else None,  # None: "(truncated)" replies
        }
        if ttl:
            values["ttl"] = float(ttl[1])
        if late:
            values["late"] = 1.0
        self._settled = seq if self._settled is None else max(self._settled, seq)
        out.append(self._make(t, values))
        return out

    def _no_answer(self, m: re.Match[str]) -> list[Sample]:
        seq = self._unwrap(int(m["seq"]))
        if self._settled is not None and seq <= self._settled:
            # Repeats ("no answer yet for icmp_seq=20" x5 while ARP is unresolved
            # and sends fail) and seqs already settled count once.
            return []
        t = self._time(m["ts"])
        out = self._settle_up_to(seq, t)
        out.append(self._loss(seq, t))
        self._settled = seq
        return out

    def _settle_up_to(self, seq: int, t: float | None) -> list[Sample]:
        """Loss samples for seqs skipped before ``seq`` (ping without -O shows none)."""
        if self._settled is None and self._from_start:
            # The run began at its first seq: the ones before this one got no reply.
            self._settled = self._first_seq - 1
        if self._settled is None:
            # Joined mid-stream: what came before is not ours to call lost.
            self._settled = seq - 1
            return []
        return [self._loss(s, t) for s in range(self._settled + 1, seq)]

    def _loss(self, seq: int, t: float | None) -> Sample:
        return self._make(t, {"seq": seq, "rtt_ms": None, "lost": 1.0})

    def _emit_summary(self, line: str) -> list[Sample]:
        totals, self._totals = self._totals, None
        if totals is None or self._summary_done:
            return []
        self._summary_done = True
        rtt = _RTT.search(line) or _BUSYBOX_RTT.search(line)
        pipe = _PIPE.search(line)
        ipg = _IPG.search(line)
        if line and not (rtt or pipe or ipg):
            self.lines_not_understood += 1
        keys = ("rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "rtt_mdev_ms")
        for i, key in enumerate(keys, start=1):
            # BusyBox prints no mdev: None, not a guess.
            found = rtt is not None and i <= len(rtt.groups())
            totals[key] = float(rtt[i]) if rtt is not None and found else None
        if pipe:
            totals["pipe"] = float(pipe[1])
        else:  # iputils prints it only above 1; BusyBox never
            totals["pipe"] = 1.0 if self._first_seq == 1 else None
        totals["ipg_ms"] = float(ipg[1]) if ipg else None
        totals["ewma_ms"] = float(ipg[2]) if ipg else None
        t = self._last_t
        if t is None and self._clock is not None:
            t = self._clock()
        out: list[Sample] = []
        transmitted = int(totals["transmitted"] or 0)
        received = int(totals["received"] or 0)
        last = self._first_seq + transmitted - 1
        if self._settled is None and received == 0:
            # No reply at all (only "Destination Host Unreachable", or nothing):
            # every seq ping sent is lost, as its summary says.
            self._settled = self._first_seq - 1
        if self._settled is not None and self._settled < last:
            # The last probes: -O reports a seq only when the next one is sent.
            # Capped by what ping itself counts as unanswered.
            trailing = range(self._settled + 1, last + 1)
            out.extend(self._loss(s, t) for s in trailing[: max(0, transmitted - received)])
            self._settled = last
        out.append(self._make(t, totals))
        return out

    # -- helpers ---------------------------------------------------------------

    def _time(self, ts: str | None) -> float | None:
        if ts is not None:
            t: float | None = float(ts)
        else:
            t = self._clock() if self._clock is not None else None
        if t is not None:
            self._last_t = t
        return t

    def _unwrap(self, raw: int) -> int:
        ref = self._ref
        if ref is None:
            seq = raw
        else:
            seq = ref - ref % SEQ_MODULO + raw
            if seq - ref > SEQ_MODULO // 2:
                seq -= SEQ_MODULO
            elif ref - seq > SEQ_MODULO // 2:
                seq += SEQ_MODULO
            if seq < 0:
                seq += SEQ_MODULO
        if ref is None or seq > ref:
            self._ref = seq
        return seq


def _totals(m: re.Match[str]) -> dict[str, float | None]:
    rest = m["rest"]

    def extra(pattern: str) -> float:
        found = re.search(pattern, rest)
        return float(found[1]) if found else 0.0

    loss = re.search(r"([\d.]+)% packet loss", rest)
    elapsed = re.search(r"time (\d+)ms", rest)
    return {
        SUMMARY: 1.0,
        "transmitted": float(m["tx"]),
        "received": float(m["rx"]),
        "duplicates": extra(r"\+(\d+) duplicates"),
        "corrupted": extra(r"\+(\d+) corrupted"),
        "errors": extra(r"\+(\d+) errors"),
        "loss_pct": float(loss[1]) if loss else None,
        "time_ms": float(elapsed[1]) if elapsed else None,
    }


# -- reading samples back ---------------------------------------------------------

SampleKind = Literal["reply", "loss", "dup", "error", "summary"]


def sample_kind(sample: Sample) -> SampleKind | None:
    """What a ping sample is (None: not a ping sample)."""
    values = sample.values
    if SUMMARY in values:
        return "summary"
    if "lost" in values:
        return "loss"
    if "dup" in values:
        return "dup"
    if "icmp_error" in values:
        return "error"
    if "rtt_ms" in values and "seq" in values:
        return "reply"
    return None


def _seq(sample: Sample) -> int:
    return int(sample.values["seq"] or 0)


def lost_seqs(samples: Iterable[Sample]) -> list[int]:
    """The seqs reported unanswered that never got a reply, ascending."""
    answered: set[int] = set()
    reported: set[int] = set()
    for sample in samples:
        kind = sample_kind(sample)
        if kind == "reply":
            answered.add(_seq(sample))
        elif kind == "loss":
            reported.add(_seq(sample))
    return sorted(reported - answered)


@dataclass(frozen=True)
class Gap:
    """A run of lost seqs and the silence around it.

    ``start_t`` is the last reply before the run, ``end_t`` the first reply
    after it (a late reply counts: the guest answered); None when the run
    starts the stream or is never followed by a reply.
    """

    start_t: float | None
    end_t: float | None
    lost_count: int
    first_seq: int
    last_seq: int

    @property
    def duration_s(self) -> float | None:
        if self.start_t is None or self.end_t is None:
            return None
        return self.end_t - self.start_t


def unreachable_gaps(samples: Iterable[Sample]) -> list[Gap]:
    """Gaps between the last reply before and the first reply after each loss run.

    ``samples`` are one ping's samples in stream order (as the parser made them).
    A seq reported unanswered that later got a (late) reply is not lost.
    """
    ordered = list(samples)
    lost = set(lost_seqs(ordered))
    gaps: list[Gap] = []
    last_reply_t: float | None = None
    run: list[int] = []
    for sample in ordered:
        kind = sample_kind(sample)
        if kind == "reply":
            if run:
                gaps.append(Gap(last_reply_t, sample.t, len(run), min(run), max(run)))
                run = []
            last_reply_t = sample.t
        elif kind == "loss":
            seq = _seq(sample)
            if seq in lost:
                lost.discard(seq)  # a seq counts once even if reported twice
                run.append(seq)
    if run:
        gaps.append(Gap(last_reply_t, None, len(run), min(run), max(run)))
    return gaps


# --------------------------------------------------------------------------- the probe

MAX_REPLY_TIMEOUT_S = 600
"""ping -W."""


class PingOptions(Options):
    """``ping -D -O -n -i INTERVAL -W TIMEOUT ADDRESS`` towards the guest."""

    interval_s: float = Field(default=0.2, ge=0.001, le=3600)
    """Seconds between echo requests: the resolution of the unreachable time."""

    reply_timeout_s: int = Field(default=1, ge=1, le=MAX_REPLY_TIMEOUT_S)
    """ping -W: seconds to wait for a reply, 1 to 600."""

    family: Literal[4, 6] | None = None
    """Force IPv4 or IPv6 (None: as the address says)."""

    def argv(self, address: str) -> list[str]:
        return ping_command(
            address,
            interval_s=self.interval_s,
            reply_timeout_s=self.reply_timeout_s,
            family=self.family,
        )

    def _try_argv(self) -> list[str]:
        return self.argv(PLACEHOLDER_ADDRESS)


class PingProbe(Probe[PingOptions]):
    """ping the guest: its replies' round trips, and how long it did not answer.

    Its special role: a run that boots the guest and measures it only from outside
    waits for :meth:`answer_argv` to succeed; the metrics read its samples as a trace
    (:mod:`backend.experiments.ping_trace`: losses, unreachable gaps)."""

    kind = PROBE
    description = "ping -D -O: RTT per reply, losses, gaps"
    options = PingOptions
    units = UNITS
    metrics = (
        # Network: a higher round trip is worse; lost replies have no rtt and are not points.
        MetricSpec(PROBE, "rtt_ms", "network (ping rtt)", "ms", higher_is_better=False),
    )

    def argv(self, options: PingOptions, run: RunContext) -> list[str]:
        return ping_command(
            run.guest_address,
            interval_s=options.interval_s,
            reply_timeout_s=options.reply_timeout_s,
            family=options.family,
            duration_s=run.limit_s,
        )

    def new_parser(self, host: str, clock: Clock = time.time) -> LineParser:
        return PingParser(host, clock=clock)

    def import_parser(self, host: str, start: float) -> LineParser:
        # When a line without -D's stamp was printed is not known in a capture.
        return PingParser(host, clock=None)

    def answer_argv(self, address: str) -> list[str] | None:
        return ping_command(address, count=1, reply_timeout_s=1)


PING = PingProbe()
