"""sysbench cpu and memory tests, with or without ``--report-interval``.

Versions read (each from a real capture in tests/data/probes):

- 0.4.x (``--test=cpu``, ``--num-threads``): ``Doing CPU performance benchmark`` /
  ``Doing memory operations speed test``, ``Test execution summary:`` or ``General
  statistics:``, latencies with a unit (``min: 4.59ms``), ``approx.  95 percentile:``,
  ``Operations performed: N (X ops/sec)``, ``MB transferred (X MB/sec)``,
  ``total time taken by event execution: S`` (seconds, read as ``lat_sum_ms``);
- 0.5: the same summary, ``[   1s] 2975.34 MB/sec,`` interval lines;
- 1.0 (Debian 12's 1.0.20): ``CPU speed:``, ``General statistics:``, ``Latency (ms):``;
- 1.1: ``Throughput:`` with ``events/s (eps):`` and ``time elapsed:`` for the total time.

Lines are read with their whitespace collapsed (tabs, runs of spaces, CRLF: as pasted
from a terminal). A line the parser does not know is skipped and counted in
:attr:`SysbenchParser.skipped`; a value it cannot read (``nan``, ``inf``) is null.

Interval samples (one per ``[ Ns ]`` line):

- cpu: ``elapsed_s``, ``threads``, ``eps`` (events/s in that second), ``lat_ms``
  (its latency percentile) and ``lat_pct`` (which percentile, 95 by default);
- memory: ``elapsed_s``, ``mib_per_s``.

The end-of-run sample has ``summary: 1.0`` and keys no interval sample uses:
``events_per_s`` (cpu) or ``ops_per_s``, ``transferred_mib``,
``transferred_mib_per_s`` (memory), and for both ``total_time_s``,
``total_events``, ``lat_min_ms``/``lat_avg_ms``/``lat_max_ms``/``lat_sum_ms``,
``lat_pct_ms``, ``thread_events_avg``/``_stddev``, ``thread_time_avg_s``/``_stddev_s``.

sysbench prints seconds since its threads started; the parser anchors that on
its clock at "Threads started!" (or at the first interval line), so a burst of
late-arriving lines keeps the spacing sysbench measured. But the guest's clock stands
still while the guest is suspended (a migration's last copy: 10 s and more for Xen
here), and every line after it was stamped that much too early, so the phases took
"after" samples into "during". When :data:`REANCHOR_LINES` lines in a row arrive more
than :data:`LATE_S` after their stamp, the anchor moves by the least of those delays;
a burst does not, as its last line arrives in time.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from backend.events import Sample
from backend.probes.base import (
    MAX_THREADS,
    PLACEHOLDER_TIME_S,
    SUMMARY,
    Clock,
    LineParser,
    MetricSpec,
    Options,
    Probe,
    RunContext,
    SampleMaker,
    option_error,
    positive_int,
)

CPU_PROBE = "sysbench-cpu"
MEMORY_PROBE = "sysbench-memory"

UNITS: dict[str, str] = {
    "elapsed_s": "s",
    "eps": "events/s",
    "lat_ms": "ms",
    "lat_pct": "%",
    "mib_per_s": "MiB/s",
    "events_per_s": "events/s",
    "ops_per_s": "ops/s",
    "transferred_mib": "MiB",
    "transferred_mib_per_s": "MiB/s",
    "total_time_s": "s",
    "lat_min_ms": "ms",
    "lat_avg_ms": "ms",
    "lat_max_ms": "ms",
    "lat_sum_ms": "ms",
    "lat_pct_ms": "ms",
    "thread_time_avg_s": "s",
    "thread_time_stddev_s": "s",
}

_SIZE = re.compile(r"\d+[KMGT]?")

# Regexes below match a line whose whitespace was collapsed to single spaces.
_NUM = r"([-+]?(?:\d+(?:\.\d*)?|nan|inf))"
# "[ 1s ] " in 1.0 and 1.1, "[   1s] " in 0.5 (hence the optional spaces).
_STAMP = r"\[ ?(?P<s>\d+)s ?\] ?"
_CPU_INTERVAL = re.compile(
    _STAMP + rf"thds: (?P<thds>\d+) eps: {_NUM} lat \(ms, ?(?P<pct>\d+)%\): {_NUM}"
)
_MEMORY_INTERVAL = re.compile(_STAMP + rf"{_NUM} Mi?B/sec")
_THREADS = re.compile(r"Number of threads: (\d+)$")
_EPS = re.compile(rf"events per second: {_NUM}$")
_EPS_11 = re.compile(rf"events/s \(eps\): {_NUM}$")
_OPS = re.compile(
    rf"(?:Total operations: (\d+) \({_NUM} per second\)|"
    rf"Operations performed: (\d+) \({_NUM} ops/sec\))$"
)
_TRANSFERRED = re.compile(rf"{_NUM} Mi?B transferred \({_NUM} Mi?B/sec\)$")
_TOTAL_TIME = re.compile(rf"(?:total time|time elapsed): {_NUM}s$")
_TOTAL_EVENTS = re.compile(r"total number of events: (\d+)$")
_EVENT_TIME = re.compile(rf"total time taken by event execution: {_NUM}s?$")  # 0.4/0.5
_LATENCY = re.compile(rf"(min|avg|max|sum): {_NUM}(?: ?ms)?$")
_PERCENTILE = re.compile(rf"(?:(\d+)th percentile|approx\. ?(\d+) percentile): {_NUM}(?: ?ms)?$")
_FAIR_EVENTS = re.compile(rf"events \(avg/stddev\): {_NUM}/{_NUM}$")
_FAIR_TIME = re.compile(rf"execution time \(avg/stddev\): {_NUM}/{_NUM}$")
_CPU_HEADER = ("Prime numbers limit", "Primer numbers limit", "Doing CPU performance benchmark",
               "Maximum prime number checked")  # fmt: skip
_MEMORY_HEADER = ("Running memory speed test", "Doing memory operations speed test")
# Lines of these formats that carry nothing the samples keep (not counted as unknown).
_KNOWN = re.compile(
    r"(?:sysbench \d|Running the test with following options|Initializing |"
    r"Random number generator seed|Report intermediate results|Done\.|"
    r"General statistics:|Test execution summary:|Latency \(ms\):|response time:|"
    r"per-request statistics:|Threads fairness:|CPU speed:|Throughput:|"
    r"Memory (?:block size|transfer size|operations type|scope type|access mode)|"
    r"(?:block size|total size|operation|scope|access mode): |WARNING: |"
    r"Time limit exceeded|Latency histogram|Threads started!|"
    r"value -+ distribution -+ count$|[\d.]+ \|\** \d+$)"  # --histogram=on rows
)


def _num(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _common(threads: int, time_s: int, report_interval_s: int | None) -> list[str]:
    if isinstance(time_s, bool) or not isinstance(time_s, int) or time_s < 0:
        raise ValueError(f"time_s must be an integer >= 0 (0: no limit), got {time_s!r}")
    argv = [f"--threads={positive_int('threads', threads)}", f"--time={time_s}"]
    if report_interval_s is not None:
        argv.append(f"--report-interval={positive_int('report_interval_s', report_interval_s)}")
    return argv


def sysbench_cpu_command(
    *,
    threads: int = 1,
    time_s: int = 10,
    max_prime: int = 1000,
    report_interval_s: int | None = 1,
    program: str = "sysbench",
) -> list[str]:
    """``sysbench cpu --cpu-max-prime=P --threads=N --time=T --report-interval=1 run``.

    The study ran primes up to 1000 with 20 threads.
    """
    prime = f"--cpu-max-prime={positive_int('max_prime', max_prime)}"
    return [program, "cpu", prime, *_common(threads, time_s, report_interval_s), "run"]


def sysbench_memory_command(
    *,
    threads: int = 1,
    time_s: int = 10,
    oper: Literal["write", "read", "none"] = "write",
    access_mode: Literal["seq", "rnd"] = "seq",
    block_size: str = "1K",
    total_size: str = "100T",
    report_interval_s: int | None = 1,
    program: str = "sysbench",
) -> list[str]:
    """``sysbench memory --memory-oper=write --memory-access-mode=seq ... run``.

    sysbench stops the memory test once ``--memory-total-size`` is moved
    (default 100G: under 4 s on this machine with 1M blocks), so the default
    here is large enough for ``time_s`` to decide the length.
    """
    if oper not in ("write", "read", "none"):
        raise ValueError(f"oper must be write, read or none, got {oper!r}")
    if access_mode not in ("seq", "rnd"):
        raise ValueError(f"access_mode must be seq or rnd, got {access_mode!r}")
    for name, size in (("block_size", block_size), ("total_size", total_size)):
        if not _SIZE.fullmatch(size):
            raise ValueError(f"{name} must look like 1K, 4M or 100T, got {size!r}")
    return [
        program,
        "memory",
        f"--memory-oper={oper}",
        f"--memory-access-mode={access_mode}",
        f"--memory-block-size={block_size}",
        f"--memory-total-size={total_size}",
        *_common(threads, time_s, report_interval_s),
        "run",
    ]


LATE_S = 2.0
"""A line this much later than sysbench's own clock says is late (a burst is not)."""
REANCHOR_LINES = 3
"""Late lines in a row that move the anchor: the guest lost time, its clock stood still."""


class SysbenchParser:
    """Incremental parser of ``sysbench cpu|memory ... run`` output (either test)."""

    def __init__(self, host: str, *, probe: str = CPU_PROBE, clock: Clock = time.time) -> None:
        self._make = SampleMaker(probe, host, UNITS)
        self._clock = clock
        self.test: Literal["cpu", "memory"] | None = None
        self.threads: int | None = None
        self._t0: float | None = None
        self._late: deque[float] = deque(maxlen=REANCHOR_LINES)
        self._summary: dict[str, float | None] = {}
        self._done = False
        self.skipped = 0  # lines not understood

    def feed(self, line: str) -> list[Sample]:
        text = " ".join(line.split())  # tabs, runs of spaces, CR: one space
        if not text:
            return []
        if text.startswith("["):
            samples = self._interval(text)
            if samples is None:
                self.skipped += 1
            return samples or []
        if text.startswith("Threads started!"):
            self._t0 = self._clock()
            return []
        if self._header(text):
            return []
        samples = self._summary_line(text)
        if samples is None:
            if not _KNOWN.match(text):
                self.skipped += 1
            return []
        return samples

    def finish(self) -> list[Sample]:
        # Cut short (killed, connection lost): keep what the summary got to say.
        return self._emit() if self._summary else []

    def _header(self, text: str) -> bool:
        if m := _THREADS.match(text):
            self.threads = int(m[1])
        elif text.startswith(_CPU_HEADER):
            self.test = "cpu"
        elif text.startswith(_MEMORY_HEADER):
            self.test = "memory"
        else:
            return False
        return True

    def _interval(self, text: str) -> list[Sample] | None:
        if m := _CPU_INTERVAL.match(text):
            self.test = "cpu"
            elapsed = float(m["s"])
            values: dict[str, float | None] = {
                "elapsed_s": elapsed,
                "threads": float(m["thds"]),
                "eps": _num(m[3]),
                "lat_ms": _num(m[5]),
                "lat_pct": float(m["pct"]),
            }
        elif m := _MEMORY_INTERVAL.match(text):
            self.test = "memory"
            elapsed = float(m["s"])
            values = {"elapsed_s": elapsed, "mib_per_s": _num(m[2])}
        else:
            return None
        now = self._clock()
        if self._t0 is None:
            self._t0 = now - elapsed
        self._late.append(now - (self._t0 + elapsed))
        if len(self._late) == REANCHOR_LINES and min(self._late) > LATE_S:
            self._t0 += min(self._late)
            self._late.clear()
        return [self._make(self._t0 + elapsed, values)]

    def _summary_line(self, text: str) -> list[Sample] | None:
        """The samples a summary line completes, [] if it completes none, None if it is
        not a summary line at all."""
        s = self._summary
        if m := _EPS.match(text):
            s["events_per_s"] = _num(m[1])
        elif m := _EPS_11.match(text):
            s.setdefault("events_per_s", _num(m[1]))  # cpu said it under "CPU speed:"
        elif m := _OPS.match(text):
            self.test = self.test or "memory"
            s["total_ops"] = float(m[1] or m[3])
            s["ops_per_s"] = _num(m[2] or m[4])
        elif m := _TRANSFERRED.match(text):
            s["transferred_mib"] = _num(m[1])
            s["transferred_mib_per_s"] = _num(m[2])
        elif m := _TOTAL_TIME.match(text):
            s["total_time_s"] = _num(m[1])
        elif m := _TOTAL_EVENTS.match(text):
            s["total_events"] = float(m[1])
        elif m := _EVENT_TIME.match(text):
            seconds = _num(m[1])
            s["lat_sum_ms"] = None if seconds is None else round(seconds * 1000, 6)
        elif (m := _LATENCY.match(text)) and "total_time_s" in s:
            s[f"lat_{m[1]}_ms"] = _num(m[2])
        elif m := _PERCENTILE.match(text):
            s["lat_pct"] = float(m[1] or m[2])
            s["lat_pct_ms"] = _num(m[3])
        elif m := _FAIR_EVENTS.match(text):
            s["thread_events_avg"] = _num(m[1])
            s["thread_events_stddev"] = _num(m[2])
        elif m := _FAIR_TIME.match(text):
            s["thread_time_avg_s"] = _num(m[1])
            s["thread_time_stddev_s"] = _num(m[2])
            return self._emit()  # the last line sysbench prints
        else:
            return None
        return []

    def _emit(self) -> list[Sample]:
        if self._done:
            return []
        self._done = True
        values: dict[str, float | None] = {SUMMARY: 1.0}
        if self.threads is not None:
            values["threads"] = float(self.threads)
        values.update(self._summary)
        total = self._summary.get("total_time_s")
        if self._t0 is not None and total is not None:
            t = self._t0 + total
        else:
            t = self._clock()
        return [self._make(t, values)]


# --------------------------------------------------------------------------- the probes

MAX_PRIME = 10_000_000
"""sysbench cpu --cpu-max-prime: one event up to 10^7 already takes seconds."""
MAX_BLOCK_BYTES = 1 << 30
"""sysbench memory --memory-block-size: each thread allocates one block."""
MAX_TOTAL_BYTES = 2**63 - 1
"""sysbench memory --memory-total-size (a 64-bit count of bytes in sysbench)."""
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_TEXT = re.compile(r"(\d+)([KMGT]?)")


class SysbenchCpuOptions(Options):
    """``sysbench cpu --cpu-max-prime=P --threads=N --time=T --report-interval=1 run``."""

    threads: int = Field(default=1, ge=1, le=MAX_THREADS)
    """Worker threads, 1 to 1024 (the study: 20)."""

    max_prime: int = Field(default=1000, ge=1, le=MAX_PRIME)
    """Each event computes the primes up to this number, at most 10000000 (the study:
    1000)."""

    def argv(self, time_s: int) -> list[str]:
        return sysbench_cpu_command(threads=self.threads, max_prime=self.max_prime, time_s=time_s)

    def _try_argv(self) -> list[str]:
        return self.argv(PLACEHOLDER_TIME_S)


class SysbenchMemoryOptions(Options):
    """``sysbench memory --memory-oper=... --memory-access-mode=... ... run``."""

    threads: int = Field(default=1, ge=1, le=MAX_THREADS)
    """Worker threads, 1 to 1024."""

    oper: Literal["write", "read", "none"] = "write"
    """Memory operation (the study: sequential writes)."""

    access_mode: Literal["seq", "rnd"] = "seq"
    """Sequential or random access."""

    block_size: str = "1K"
    """Bytes per operation, like 1K or 1M; at most 1G."""

    total_size: str = "100T"
    """Stop after moving this much; large, so that the run's time decides its length.
    At most 2^63-1 bytes (8388607T)."""

    @field_validator("block_size", "total_size")
    @classmethod
    def _size_range(cls, value: str, info: ValidationInfo) -> str:
        match = _SIZE_TEXT.fullmatch(value)
        if match is None:
            return value  # not a size at all: the command builder says what one looks like
        limit = MAX_BLOCK_BYTES if info.field_name == "block_size" else MAX_TOTAL_BYTES
        digits, unit = match.groups()
        if len(digits) > 20 or int(digits) * _SIZE_UNITS[unit] > limit:
            shown = "1G" if limit == MAX_BLOCK_BYTES else "8388607T"
            raise option_error(f"{info.field_name} is at most {shown}, got {value[:30]!r}")
        return value

    def argv(self, time_s: int) -> list[str]:
        return sysbench_memory_command(
            threads=self.threads,
            oper=self.oper,
            access_mode=self.access_mode,
            block_size=self.block_size,
            total_size=self.total_size,
            time_s=time_s,
        )

    def _try_argv(self) -> list[str]:
        return self.argv(PLACEHOLDER_TIME_S)


class SysbenchCpuProbe(Probe[SysbenchCpuOptions]):
    kind = CPU_PROBE
    description = "sysbench cpu: events/s per second and totals"
    options = SysbenchCpuOptions
    units = UNITS
    metrics = (
        # CPU: fewer events per second is worse.
        MetricSpec(CPU_PROBE, "eps", "cpu (sysbench)", "events/s", higher_is_better=True),
    )

    def argv(self, options: SysbenchCpuOptions, run: RunContext) -> list[str]:
        return options.argv(run.limit_s)

    def new_parser(self, host: str, clock: Clock = time.time) -> LineParser:
        return SysbenchParser(host, probe=CPU_PROBE, clock=clock)


class SysbenchMemoryProbe(Probe[SysbenchMemoryOptions]):
    kind = MEMORY_PROBE
    description = "sysbench memory: MiB/s per second and totals"
    options = SysbenchMemoryOptions
    units = UNITS
    metrics = (
        # Memory: a lower write rate is worse.
        MetricSpec(MEMORY_PROBE, "mib_per_s", "memory (sysbench)", "MiB/s", higher_is_better=True),
    )

    def argv(self, options: SysbenchMemoryOptions, run: RunContext) -> list[str]:
        return options.argv(run.limit_s)

    def new_parser(self, host: str, clock: Clock = time.time) -> LineParser:
        return SysbenchParser(host, probe=MEMORY_PROBE, clock=clock)


SYSBENCH_CPU = SysbenchCpuProbe()
SYSBENCH_MEMORY = SysbenchMemoryProbe()
