"""A probe that miglab does not ship, for the tests that add one: ``cat /proc/loadavg``
every ``interval_s`` seconds. Everything a new probe needs is here: its options model,
its command, its parser and its metrics; the tests register it in
:data:`backend.probes.PROBES` and the scenario schema, runner, metrics and report take
it from there."""

from __future__ import annotations

import re
import time

from pydantic import Field

from backend.events import Sample
from backend.probes import Clock, LineParser, MetricSpec, Options, Probe, RunContext
from backend.probes.base import SampleMaker

KIND = "loadavg"
UNITS = {"load1": "", "load5": "", "load15": ""}

# $1 seconds between readings, $2 the run's time limit in seconds.
SCRIPT = """\
i=0
while [ "$i" -lt "$2" ]; do
  cat /proc/loadavg || exit 1
  sleep "$1"
  i=$((i + $1))
done
"""

# "0.52 0.58 0.59 1/467 12345": 1, 5 and 15 minute load, running/all tasks, last pid.
_LINE = re.compile(r"(\d+\.\d+) (\d+\.\d+) (\d+\.\d+) (\d+)/(\d+) \d+$")


class LoadavgOptions(Options):
    """``cat /proc/loadavg`` every ``interval_s`` seconds."""

    interval_s: int = Field(default=1, ge=1, le=60)
    """Seconds between readings, 1 to 60."""

    def _try_argv(self) -> list[str]:
        run = RunContext(
            guest_address="198.18.0.2", guest_memory_mb=1024, limit_s=60, warmup_s=0, expected_s=60
        )
        return LOADAVG.argv(self, run)


class LoadavgParser:
    """One sample per /proc/loadavg line, timed when the line arrived."""

    def __init__(self, host: str, clock: Clock = time.time) -> None:
        self._make = SampleMaker(KIND, host, UNITS)
        self._clock = clock
        self.lines_not_understood = 0

    def feed(self, line: str) -> list[Sample]:
        m = _LINE.match(" ".join(line.split()))
        if m is None:
            self.lines_not_understood += 1
            return []
        values: dict[str, float | None] = {
            "load1": float(m[1]),
            "load5": float(m[2]),
            "load15": float(m[3]),
            "running": float(m[4]),
            "tasks": float(m[5]),
        }
        return [self._make(self._clock(), values)]

    def finish(self) -> list[Sample]:
        return []


class LoadavgProbe(Probe[LoadavgOptions]):
    kind = KIND
    description = "the 1, 5 and 15 minute load averages of its host"
    options = LoadavgOptions
    units = UNITS
    metrics = (MetricSpec(KIND, "load1", "load (1 min)", "", higher_is_better=False),)

    def argv(self, options: LoadavgOptions, run: RunContext) -> list[str]:
        limit = str(run.limit_s)
        return ["sh", "-c", SCRIPT, "miglab-loadavg", str(options.interval_s), limit]

    def new_parser(self, host: str, clock: Clock = time.time) -> LineParser:
        return LoadavgParser(host, clock)


LOADAVG = LoadavgProbe()

SCENARIO = """\
id = "loadavg"
title = "the guest's load average around a migration"
migrations = 1

[timeline]
baseline_s = 3
after_s = 3

[[probes]]
kind = "loadavg"
where = "guest"
options = { interval_s = 1 }
"""
