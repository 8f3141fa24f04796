"""sysbench 1.0 cpu and memory tests, with or without ``--report-interval``.

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
late-arriving lines keeps the spacing sysbench measured.
"""

from __future__ import annotations

import re
import time
from typing import Literal

from backend.events import Sample
from backend.probes.base import SUMMARY, Clock, SampleMaker, positive_int

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

# "[ 1s ] " in 1.0 ("[%4.0fs] " in 0.5, hence the optional spaces).
_STAMP = r"\[\s*(?P<s>\d+)s\s*\] "
_CPU_INTERVAL = re.compile(
    _STAMP + r"thds: (?P<thds>\d+) eps: (?P<eps>[\d.]+) lat \(ms,(?P<pct>\d+)%\): (?P<lat>[\d.]+)"
)
_MEMORY_INTERVAL = re.compile(_STAMP + r"(?P<rate>[\d.]+) Mi?B/sec")
_THREADS = re.compile(r"Number of threads: (\d+)")
_EPS = re.compile(r"\s*events per second:\s+([\d.]+)")
_OPS = re.compile(r"Total operations: (\d+) \(([\d.]+) per second\)")
_TRANSFERRED = re.compile(r"([\d.]+) Mi?B transferred \(([\d.]+) Mi?B/sec\)")
_TOTAL_TIME = re.compile(r"\s*total time:\s+([\d.]+)s")
_TOTAL_EVENTS = re.compile(r"\s*total number of events:\s+(\d+)")
_LATENCY = re.compile(r"\s*(min|avg|max|sum):\s+([\d.]+)\s*$")
_PERCENTILE = re.compile(r"\s*(\d+)th percentile:\s+([\d.]+)")
_FAIR_EVENTS = re.compile(r"\s*events \(avg/stddev\):\s+([\d.]+)/([\d.]+)")
_FAIR_TIME = re.compile(r"\s*execution time \(avg/stddev\):\s+([\d.]+)/([\d.]+)")


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


class SysbenchParser:
    """Incremental parser of ``sysbench cpu|memory ... run`` output (either test)."""

    def __init__(self, host: str, *, probe: str = CPU_PROBE, clock: Clock = time.time) -> None:
        self._make = SampleMaker(probe, host, UNITS)
        self._clock = clock
        self.test: Literal["cpu", "memory"] | None = None
        self.threads: int | None = None
        self._t0: float | None = None
        self._summary: dict[str, float | None] = {}
        self._done = False

    def feed(self, line: str) -> list[Sample]:
        line = line.rstrip("\r\n")
        if line.startswith("["):
            return self._interval(line)
        if line.startswith("Threads started!"):
            self._t0 = self._clock()
            return []
        self._header(line)
        return self._summary_line(line)

    def finish(self) -> list[Sample]:
        # Cut short (killed, connection lost): keep what the summary got to say.
        return self._emit() if self._summary else []

    def _header(self, line: str) -> None:
        if m := _THREADS.match(line):
            self.threads = int(m[1])
        elif line.startswith("Prime numbers limit"):
            self.test = "cpu"
        elif line.startswith("Running memory speed test"):
            self.test = "memory"

    def _interval(self, line: str) -> list[Sample]:
        if m := _CPU_INTERVAL.match(line):
            self.test = "cpu"
            elapsed = float(m["s"])
            values: dict[str, float | None] = {
                "elapsed_s": elapsed,
                "threads": float(m["thds"]),
                "eps": float(m["eps"]),
                "lat_ms": float(m["lat"]),
                "lat_pct": float(m["pct"]),
            }
        elif m := _MEMORY_INTERVAL.match(line):
            self.test = "memory"
            elapsed = float(m["s"])
            values = {"elapsed_s": elapsed, "mib_per_s": float(m["rate"])}
        else:
            return []
        if self._t0 is None:
            self._t0 = self._clock() - elapsed
        return [self._make(self._t0 + elapsed, values)]

    def _summary_line(self, line: str) -> list[Sample]:
        s = self._summary
        if m := _EPS.match(line):
            s["events_per_s"] = float(m[1])
        elif m := _OPS.match(line):
            s["total_ops"] = float(m[1])
            s["ops_per_s"] = float(m[2])
        elif m := _TRANSFERRED.match(line):
            s["transferred_mib"] = float(m[1])
            s["transferred_mib_per_s"] = float(m[2])
        elif m := _TOTAL_TIME.match(line):
            s["total_time_s"] = float(m[1])
        elif m := _TOTAL_EVENTS.match(line):
            s["total_events"] = float(m[1])
        elif (m := _LATENCY.match(line)) and "total_time_s" in s:
            s[f"lat_{m[1]}_ms"] = float(m[2])
        elif m := _PERCENTILE.match(line):
            s["lat_pct"] = float(m[1])
            s["lat_pct_ms"] = float(m[2])
        elif m := _FAIR_EVENTS.match(line):
            s["thread_events_avg"] = float(m[1])
            s["thread_events_stddev"] = float(m[2])
        elif m := _FAIR_TIME.match(line):
            s["thread_time_avg_s"] = float(m[1])
            s["thread_time_stddev_s"] = float(m[2])
            return self._emit()  # the last line sysbench prints
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
