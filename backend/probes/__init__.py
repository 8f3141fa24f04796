"""Probes: what a measuring tool is run as, and how its output becomes samples.

Each module gives a command builder (an argv list; a remote command line is
``shlex.join`` of it) and an incremental line parser (``feed(line)`` per output
line, ``finish()`` at end of stream, both returning
:class:`~backend.events.Sample` lists). Nothing here runs a process: the
transport does, and hands the lines over.

:data:`PROBES` names every probe kind for the runner and ``miglab import``.
"""

from __future__ import annotations

import time

from backend.probes import build, dbench, dirtier, ping, sysbench
from backend.probes.base import (
    SUMMARY,
    Clock,
    LineParser,
    ParserFactory,
    ProbeSpec,
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
    "BuildParser",
    "Clock",
    "DbenchParser",
    "DirtierParser",
    "Gap",
    "LineParser",
    "ParserFactory",
    "PingParser",
    "ProbeSpec",
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
    "sysbench_cpu_command",
    "sysbench_memory_command",
    "unreachable_gaps",
]


def _ping(host: str, clock: Clock) -> LineParser:
    return PingParser(host, clock=clock)


def _sysbench_cpu(host: str, clock: Clock) -> LineParser:
    return SysbenchParser(host, probe=sysbench.CPU_PROBE, clock=clock)


def _sysbench_memory(host: str, clock: Clock) -> LineParser:
    return SysbenchParser(host, probe=sysbench.MEMORY_PROBE, clock=clock)


def _dbench(host: str, clock: Clock) -> LineParser:
    return DbenchParser(host, clock=clock)


def _build(host: str, clock: Clock) -> LineParser:
    return BuildParser(host, clock=clock)


def _dirtier(host: str, clock: Clock) -> LineParser:
    return DirtierParser(host, clock=clock)


PROBES: dict[str, ProbeSpec] = {
    spec.kind: spec
    for spec in (
        ProbeSpec(ping.PROBE, "ping -D -O: RTT per reply, losses, gaps", _ping, ping.UNITS),
        ProbeSpec(
            sysbench.CPU_PROBE,
            "sysbench cpu: events/s per second and totals",
            _sysbench_cpu,
            sysbench.UNITS,
        ),
        ProbeSpec(
            sysbench.MEMORY_PROBE,
            "sysbench memory: MiB/s per second and totals",
            _sysbench_memory,
            sysbench.UNITS,
        ),
        ProbeSpec(dbench.PROBE, "dbench: MB/s and latency per second", _dbench, dbench.UNITS),
        ProbeSpec(build.PROBE, "a make -jN build: files compiled per second", _build, build.UNITS),
        ProbeSpec(
            dirtier.PROBE, "the RAM dirtier: MiB/s rewritten per round", _dirtier, dirtier.UNITS
        ),
    )
}


def new_parser(kind: str, host: str, clock: Clock = time.time) -> LineParser:
    """A fresh parser of probe ``kind`` (a key of :data:`PROBES`)."""
    try:
        spec = PROBES[kind]
    except KeyError:
        known = ", ".join(sorted(PROBES))
        raise ValueError(f"unknown probe kind {kind!r} (known: {known})") from None
    return spec.new_parser(host, clock)
