"""dbench 4.0: ``dbench -t SECONDS [-c LOADFILE] [-D DIR] CLIENTS``.

Per-second samples (``phase`` 0 = warmup, 1 = execute, 2 = cleanup):

- warmup / execute lines: ``phase``, ``elapsed_s`` (dbench's counter, restarts
  at 1 when execute begins), ``clients``, ``lines`` (loadfile lines done per
  client), ``mb_per_s`` as printed, ``mb_per_s_1s`` and ``latency_ms``.
- cleanup lines: ``phase`` 2, ``elapsed_s``, ``clients`` (still running).

dbench's MB/sec is the average since its phase began (total bytes / t), which
smooths a dip away; ``mb_per_s_1s`` undoes that from two successive lines
(``(avg_n * t_n - avg_m * t_m) / (t_n - t_m)``), the rate of that interval.
``latency_ms`` is the worst operation latency in that second.

Formats read: dbench 4.0 as Debian ships it (4.0-2.1, "dbench version 4.00"),
with or without ``-s`` (sync open) / ``-S`` (sync dirs), whose ``Throughput``
line then says ``(sync open)`` / ``(sync dirs)``; progress lines of dbench 3
(no latency) and of the 4.x betas (``latency N msec``). Whitespace mangled by
copy and paste (tabs, runs of spaces, CRLF) reads the same; a line of no known
form is skipped and counted in :attr:`DbenchParser.lines_not_understood`.

The end-of-run sample (the ``Throughput`` line) has ``summary: 1.0``,
``throughput_mb_per_s``, ``clients``, ``procs``, ``max_latency_ms`` and, when
the operation table was printed, ``operations`` (its counts summed).

Times: dbench counts seconds from its start (then from the end of warmup); the
parser anchors the first progress line on its clock, the execute phase at the
warmup's anchor plus the last warmup second plus one (dbench switches phase on
the tick after it, without printing).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping

from pydantic import Field

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
    positive_int,
)

PROBE = "dbench"
DEBIAN_LOADFILE = "/usr/share/dbench/client.txt"

WARMUP = 0.0
EXECUTE = 1.0
CLEANUP = 2.0
_PHASES = {"warmup": WARMUP, "execute": EXECUTE, "cleanup": CLEANUP}

UNITS: dict[str, str] = {
    "elapsed_s": "s",
    "mb_per_s": "MB/s",
    "mb_per_s_1s": "MB/s",
    "latency_ms": "ms",
    "throughput_mb_per_s": "MB/s",
    "max_latency_ms": "ms",
}

# "%4d  %8d  %7.2f MB/sec  execute %3.0f sec  latency %.03f ms"; dbench 3 had no
# latency, older 4.x betas printed "latency %.2f msec".
_PROGRESS = re.compile(
    r"\s*(?P<clients>\d+)\s+(?P<lines>\d+)\s+(?P<mb>[\d.]+) MB/sec\s+"
    r"(?P<phase>warmup|execute|cleanup)\s+(?P<sec>\d+) sec"
    r"(?:\s+latency (?P<lat>[\d.]+) m(?:sec|s))?\s*$"
)
_CLEANUP = re.compile(r"\s*(?P<clients>\d+)\s+cleanup\s+(?P<sec>\d+) sec\s*$")
_OPERATION = re.compile(r"\s*(?P<name>[A-Za-z]\w*)\s+(?P<count>\d+)\s+[\d.]+\s+[\d.]+\s*$")
# "-s" adds " (sync open)", "-S" " (sync dirs)" after MB/sec (captured from dbench 4.0).
_THROUGHPUT = re.compile(
    r"\s*Throughput (?P<mb>[\d.]+(?:e[+-]?\d+)?) MB/sec(?:\s+\(sync (?:open|dirs)\))*\s+"
    r"(?P<clients>\d+) clients\s+(?P<procs>\d+) procs\s+max_latency=(?P<lat>[\d.]+) ms"
)
# dbench's own lines with nothing to measure: banner, start-up, the operation
# table's head, and its per-operation errors ("[3] open ... failed", "(4) ERROR: ...").
_CHATTER = re.compile(
    r"\s*(?:$|dbench version |Running for |failed to create barrier semaphore"
    r"|\d+ of \d+ processes prepared for launch|releasing clients|Operation\s+Count\s"
    r"|-+\s*$|Child failed with status|\[\d+\] |\(\d+\) )"
)


def dbench_command(
    clients: int,
    *,
    time_s: int,
    directory: str | None = None,
    loadfile: str | None = None,
    program: str = "dbench",
) -> list[str]:
    """The argv of a dbench run of ``time_s`` seconds with ``clients`` clients.

    Warmup is ``time_s / 5`` (dbench has no option for it): the study's 80 s
    warmup is ``time_s=400``. ``directory`` must exist (dbench does not create
    it); ``loadfile`` None uses dbench's built-in default, on Debian
    :data:`DEBIAN_LOADFILE`.
    """
    argv = [program, "-t", str(positive_int("time_s", time_s))]
    if loadfile is not None:
        if not loadfile:
            raise ValueError("loadfile must not be empty")
        argv += ["-c", loadfile]
    if directory is not None:
        if not directory:
            raise ValueError("directory must not be empty")
        argv += ["-D", directory]
    argv.append(str(positive_int("clients", clients)))
    return argv


class DbenchParser:
    """Incremental parser of dbench 4 output."""

    def __init__(self, host: str, *, probe: str = PROBE, clock: Clock = time.time) -> None:
        self._make = SampleMaker(probe, host, UNITS)
        self._clock = clock
        self._phase: float | None = None
        self._anchor: float | None = None  # clock time of the current phase's second 0
        self._prev: tuple[float, float] = (0.0, 0.0)  # (sec, MB/s) of the phase's last line
        self._operations: int | None = None
        self._last_t: float | None = None
        self._done = False
        self.lines_not_understood = 0
        """Lines of no known form: skipped, never raised on."""

    def feed(self, line: str) -> list[Sample]:
        line = " ".join(line.split())  # tabs, runs of spaces, CRLF from a paste
        if m := _PROGRESS.match(line):
            return self._progress(m)
        if m := _CLEANUP.match(line):
            sec = float(m["sec"])
            t = self._time(CLEANUP, sec)
            values: dict[str, float | None] = {
                "phase": CLEANUP,
                "elapsed_s": sec,
                "clients": float(m["clients"]),
            }
            return [self._make(t, values)]
        if m := _OPERATION.match(line):
            self._operations = (self._operations or 0) + int(m["count"])
            return []
        if m := _THROUGHPUT.match(line):
            return self._summary(m)
        if not _CHATTER.match(line):
            self.lines_not_understood += 1
        return []

    def finish(self) -> list[Sample]:
        return []  # without its Throughput line a run has no result to report

    def _progress(self, m: re.Match[str]) -> list[Sample]:
        phase = _PHASES[m["phase"]]
        sec = float(m["sec"])
        mb = float(m["mb"])
        t = self._time(phase, sec)
        prev_sec, prev_mb = self._prev
        rate: float | None = None
        if sec > prev_sec:
            # Rounded as dbench prints; clamped: rounding can dip an idle second below 0.
            rate = round(max(0.0, (mb * sec - prev_mb * prev_sec) / (sec - prev_sec)), 2)
        self._prev = (sec, mb)
        values: dict[str, float | None] = {
            "phase": phase,
            "elapsed_s": sec,
            "clients": float(m["clients"]),
            "lines": float(m["lines"]),
            "mb_per_s": mb,
            "mb_per_s_1s": rate,
        }
        if m["lat"] is not None:
            values["latency_ms"] = float(m["lat"])
        return [self._make(t, values)]

    def _time(self, phase: float, sec: float) -> float:
        """The clock time of ``sec`` seconds into ``phase``; re-anchors when it changes."""
        anchor = self._anchor
        if phase != self._phase or anchor is None:
            if phase == EXECUTE and self._phase == WARMUP and anchor is not None:
                anchor += self._prev[0] + 1.0
            elif phase != CLEANUP or anchor is None:
                # Cleanup keeps counting on the execute phase's clock.
                anchor = self._clock() - sec
            if phase != CLEANUP:
                self._prev = (0.0, 0.0)  # dbench restarts its byte count with the phase
            self._anchor = anchor
            self._phase = phase
        self._last_t = anchor + sec
        return self._last_t

    def _summary(self, m: re.Match[str]) -> list[Sample]:
        if self._done:
            return []
        self._done = True
        values: dict[str, float | None] = {
            SUMMARY: 1.0,
            "throughput_mb_per_s": float(m["mb"]),
            "clients": float(m["clients"]),
            "procs": float(m["procs"]),
            "max_latency_ms": float(m["lat"]),
        }
        if self._operations is not None:
            values["operations"] = float(self._operations)
        t = self._clock()
        if self._last_t is not None:
            t = max(t, self._last_t)  # never before the seconds it sums up
        return [self._make(t, values)]


# --------------------------------------------------------------------------- the probe


class DbenchOptions(Options):
    """``dbench -t T [-c LOADFILE] [-D DIR] CLIENTS``; dbench warms up for T/5 itself."""

    clients: int = Field(default=2, ge=1, le=MAX_THREADS)
    """Simulated clients, 1 to 1024 (the study: 2, one per vCPU)."""

    directory: str | None = None
    """Working directory in the guest, on the disk under test (must exist)."""

    loadfile: str | None = None
    """dbench's load file (None: its default, client.txt)."""

    def argv(self, time_s: int) -> list[str]:
        return dbench_command(
            self.clients, time_s=time_s, directory=self.directory, loadfile=self.loadfile
        )

    def _try_argv(self) -> list[str]:
        return self.argv(PLACEHOLDER_TIME_S)


def dbench_time_s(run: RunContext) -> int:
    """dbench's ``-t``. It warms up for a fifth of it: with a scenario warm-up, that
    fifth is the warm-up (as the study's ``-t 400`` for 80 s); without, it is the
    stage's expected length (and its first fifth is not measured)."""
    if run.warmup_s > 0:
        return max(5, round(5 * run.warmup_s))
    return max(5, math.ceil(run.expected_s))


class DbenchProbe(Probe[DbenchOptions]):
    """dbench in a directory of the guest's disk: a fresh scratch one unless given."""

    kind = PROBE
    description = "dbench: MB/s and latency per second"
    options = DbenchOptions
    units = UNITS
    metrics = (
        # Disk: dbench's per-second throughput (not its running average); execute phase only.
        MetricSpec(PROBE, "mb_per_s_1s", "disk throughput (dbench)", "MB/s", higher_is_better=True),
        # Disk: the worst operation latency in each second; higher is worse.
        MetricSpec(PROBE, "latency_ms", "disk latency (dbench)", "ms", higher_is_better=False),
    )

    def argv(self, options: DbenchOptions, run: RunContext) -> list[str]:
        directory = options.directory or run.scratch
        return options.model_copy(update={"directory": directory}).argv(dbench_time_s(run))

    def new_parser(self, host: str, clock: Clock = time.time) -> LineParser:
        return DbenchParser(host, clock=clock)

    def scratch_dir(self, options: DbenchOptions) -> str | None:
        return "dbench" if options.directory is None else None

    def notes(self, options: DbenchOptions, run: RunContext) -> list[str]:
        if run.warmup_s != 0:
            return []
        return [
            f"dbench warms up for a fifth of its run (-t {dbench_time_s(run)}) and the "
            "scenario has no warm-up: its first readings are not measured (give warmup_s)"
        ]

    def measured(self, values: Mapping[str, float | None]) -> bool:
        # dbench's own warm-up lines (phase 0) are not measurements.
        return values.get("phase") != WARMUP


DBENCH = DbenchProbe()
