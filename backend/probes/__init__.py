"""Probes: what a measuring tool is run as, and how its output becomes samples.

Each module gives its :class:`Probe` object: the options a scenario entry gives it,
a command builder (an argv list; a remote command line is ``shlex.join`` of it), an
incremental line parser (``feed(line)`` per output line, ``finish()`` at end of
stream, both returning :class:`~backend.events.Sample` lists) and the metrics its
samples give. Nothing here runs a process: the transport does, and hands the lines
over.

:data:`PROBES` is the registry: the scenario schema, the runner, the metrics and
``miglab import`` ask it, and name no probe kind themselves.
"""

from __future__ import annotations

import time

from backend.probes import build, dbench, dirtier, ping, sysbench
from backend.probes.base import (
    SUMMARY,
    AnyProbe,
    Clock,
    LineParser,
    MetricSpec,
    Options,
    ParserFactory,
    Probe,
    RunContext,
    is_summary,
    parse_lines,
)
from backend.probes.build import BuildParser, build_command, make_argv
from backend.probes.dbench import DbenchParser, dbench_command
from backend.probes.dirtier import DirtierParser, dirtier_command
from backend.probes.ping import Gap, PingParser, lost_seqs, ping_command, unreachable_gaps
from backend.probes.sysbench import (
    SysbenchParser,
    sysbench_cpu_command,
    sysbench_memory_command,
)

__all__ = [
    "PROBES",
    "SUMMARY",
    "AnyProbe",
    "BuildParser",
    "Clock",
    "DbenchParser",
    "DirtierParser",
    "Gap",
    "LineParser",
    "MetricSpec",
    "Options",
    "ParserFactory",
    "PingParser",
    "Probe",
    "RunContext",
    "SysbenchParser",
    "build_command",
    "dbench_command",
    "dirtier_command",
    "is_summary",
    "lost_seqs",
    "make_argv",
    "new_parser",
    "parse_lines",
    "ping_command",
    "probe_of",
    "sysbench_cpu_command",
    "sysbench_memory_command",
    "unreachable_gaps",
]


PROBES: dict[str, AnyProbe] = {
    probe.kind: probe
    for probe in (
        ping.PING,
        sysbench.SYSBENCH_CPU,
        sysbench.SYSBENCH_MEMORY,
        dbench.DBENCH,
        build.BUILD,
        dirtier.DIRTIER,
    )
}
"""Every probe kind, in the order the report lists their metrics. A new probe is a
module here with its :class:`Probe` object, and one line in this table."""


def probe_of(kind: str) -> AnyProbe:
    """The probe of ``kind`` (a key of :data:`PROBES`)."""
    try:
        return PROBES[kind]
    except KeyError:
        known = ", ".join(sorted(PROBES))
        raise ValueError(f"unknown probe kind {kind!r} (known: {known})") from None


def new_parser(kind: str, host: str, clock: Clock = time.time) -> LineParser:
    """A fresh parser of probe ``kind`` (a key of :data:`PROBES`)."""
    return probe_of(kind).new_parser(host, clock)
