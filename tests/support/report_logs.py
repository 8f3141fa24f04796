"""Synthetic session logs for the report: diverse small ones for the before/after test of
the metrics, and large ones for tests/bench/bench_report.py.

The lines are written as the session log writer writes them (compact JSON, one event a
line) but straight from dicts, so a log of millions of events is made in seconds. Their
shapes are those of the real parsers' samples (ping replies and losses as PingParser
makes them, sysbench and dbench intervals) and of the runner's markers.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.probes import SUMMARY

T0 = 1_795_000_000.0


@dataclass(frozen=True)
class Shape:
    """What a synthetic log holds."""

    seed: int = 1
    repetitions: int = 1
    seconds: float = 60.0
    """Of each repetition."""
    round_trip: bool = False
    ping_hosts: tuple[str, ...] = ("storage",)
    ping_interval: float = 0.2
    disks: bool = False
    """A disk comparison: disk markers, no migration."""
    jitter: float = 0.0
    """Samples logged up to this many seconds out of time order."""
    cut: bool = False
    """No end marker, a half line at the end."""
    failed: bool = False
    """The last migration fails."""
    scenario: str = "migrate-combined"


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"


def _ping_reply(t: float, host: str, seq: int, rtt: float) -> dict[str, Any]:
    return {
        "kind": "sample", "t": t, "probe": "ping", "host": host,
        "values": {"seq": float(seq), "rtt_ms": rtt, "ttl": 64.0}, "unit": {"rtt_ms": "ms"},
    }  # fmt: skip


def _ping_lost(t: float, host: str, seq: int) -> dict[str, Any]:
    return {
        "kind": "sample", "t": t, "probe": "ping", "host": host,
        "values": {"seq": float(seq), "rtt_ms": None, "lost": 1.0}, "unit": {"rtt_ms": "ms"},
    }  # fmt: skip


def _repetition(
    shape: Shape, rng: random.Random, number: int, r0: float
) -> Iterator[dict[str, Any]]:
    """One repetition's events, in log order (samples possibly jittered)."""
    span = shape.seconds
    warm, base = r0 + 0.05 * span, r0 + 0.25 * span
    mig_start, mig_end = r0 + 0.45 * span, r0 + 0.6 * span
    back_start, back_end = r0 + 0.7 * span, r0 + 0.8 * span
    yield {"kind": "experiment.repetition", "t": r0, "number": number, "of": shape.repetitions}
    marks: list[dict[str, Any]] = [
        {"kind": "phase", "t": warm, "name": "warmup"},
        {"kind": "phase", "t": base, "name": "baseline"},
    ]
    legs = [(mig_start, mig_end, "xen1", "xen2")]
    if shape.round_trip:
        legs.append((back_start, back_end, "xen2", "xen1"))
    if shape.disks:
        marks.append({"kind": "experiment.disk", "t": base, "disk": "local"})
        marks.append({"kind": "experiment.disk", "t": mig_start, "disk": "iscsi"})
        legs = []
    for k, (start, end, source, dest) in enumerate(legs):
        marks.append({"kind": "phase", "t": start, "name": "migrating"})
        for i, t in enumerate(range(int(start) + 1, int(end))):
            marks.append({
                "kind": "migration.progress", "t": float(t), "domain": "guest", "source": source,
                "dest": dest, "iteration": i + 1, "transferred_bytes": (i + 1) * 2**20,
            })  # fmt: skip
        ok = not (shape.failed and k == len(legs) - 1 and number == shape.repetitions)
        marks.append({
            "kind": "migration.finished", "t": end, "domain": "guest", "source": source,
            "dest": dest, "ok": ok, "total_time_ms": round((end - start) * 1000 * 0.97, 3),
            "downtime_ms": round(rng.uniform(20, 300), 3), "transferred_bytes": 2**30,
            "iterations": 7 + k, "error": None if ok else "xl exited with status 1",
        })  # fmt: skip
        marks.append(
            {"kind": "phase", "t": end, "name": "between" if k + 1 < len(legs) else "after"}
        )
    if not legs:
        marks.append({"kind": "phase", "t": mig_end, "name": "after"})
    samples: list[dict[str, Any]] = []
    for h, host in enumerate(shape.ping_hosts):
        silent_from = mig_start + (mig_end - mig_start) * rng.uniform(0.3, 0.7)
        silent_to = silent_from + rng.uniform(0.5, 3.0)
        seq = 0
        t = r0 + h * 0.01
        while t < r0 + span:
            seq += 1
            if silent_from <= t < silent_to or rng.random() < 0.003:
                samples.append(_ping_lost(t + shape.ping_interval, host, seq))
                if rng.random() < 0.05:  # a late reply: not lost after all
                    samples.append(_ping_reply(t + 1.5, host, seq, 1500.0))
            else:
                during = any(a <= t <= b for a, b, _, _ in legs)
                rtt = round(rng.gauss(0.9 if during else 0.5, 0.05), 3)
                samples.append(_ping_reply(t + rtt / 1000, host, seq, rtt))
            t += shape.ping_interval
    for k in range(int(span)):
        t = r0 + k + 0.5
        during = any(a <= t <= b for a, b, _, _ in legs)
        samples.append({
            "kind": "sample", "t": t, "probe": "sysbench-cpu", "host": "guest",
            "values": {"elapsed_s": float(k + 1), "threads": 2.0,
                       "eps": round(rng.gauss(80 if during else 100, 3), 2), "lat_ms": 0.03},
            "unit": {"eps": "events/s", "lat_ms": "ms"},
        })  # fmt: skip
        mb = round(rng.gauss(12 if during else 20, 1), 2)
        samples.append({
            "kind": "sample", "t": t + 0.1, "probe": "dbench", "host": "guest",
            "values": {"phase": 0.0 if k < 3 else 1.0, "elapsed_s": float(k), "clients": 2.0,
                       "mb_per_s": mb, "mb_per_s_1s": mb,
                       "latency_ms": round(rng.uniform(5, 40 if during else 15), 3)},
        })  # fmt: skip
    samples.sort(key=lambda e: e["t"])
    if shape.jitter:  # a parser may date a reading before the event logged ahead of it
        keyed = [(e["t"] + rng.uniform(0, shape.jitter), i, e) for i, e in enumerate(samples)]
        samples = [e for _, _, e in sorted(keyed)]
    for host in shape.ping_hosts:
        samples.append({
            "kind": "sample", "t": r0 + span - 0.01, "probe": "ping", "host": host,
            "values": {SUMMARY: 1.0, "transmitted": 100.0, "received": 99.0, "loss_pct": 1.0},
        })  # fmt: skip
    # Markers and samples interleaved by time, markers first at a tie (as the bus does).
    merged = sorted([(e["t"], 0, i, e) for i, e in enumerate(marks)]
                    + [(e["t"], 1, i, e) for i, e in enumerate(samples)],
                    key=lambda x: (x[0], x[1], x[2]))  # fmt: skip
    if shape.jitter:  # keep the jittered samples' own order among samples
        order = iter(samples)
        merged = [(t, kind, i, e if kind == 0 else next(order)) for t, kind, i, e in merged]
    for _, _, _, event in merged:
        yield event


def write_log(path: Path, shape: Shape) -> Path:
    """Write a synthetic session log; returns ``path``."""
    rng = random.Random(shape.seed)
    header = {
        "kind": "session.header", "t": T0, "schema": 1, "miglab": "0", "lab_file": None,
        "lab_sha256": None, "lab": {"lab": {"name": "synthetic"}}, "simulated": True,
        "scenario": shape.scenario, "hosts": {}, "simulation": None,
    }  # fmt: skip
    with path.open("w", encoding="utf-8") as out:
        out.write(_dump(header))
        out.write(_dump({"kind": "host.state", "t": T0, "host": "xen1", "state": "connected"}))
        out.write(_dump({
            "kind": "command.finished", "t": T0 + 0.5, "host": "xen1", "cmd_id": 1,
            "argv": ["xl", "list"], "exit_status": 1, "duration_s": 0.1,
        }))  # fmt: skip
        out.write(_dump({"kind": "note", "t": T0 + 0.6, "level": "warning", "text": "slow host"}))
        for number in range(1, shape.repetitions + 1):
            r0 = T0 + 1 + (number - 1) * (shape.seconds + 2)
            for event in _repetition(shape, rng, number, r0):
                out.write(_dump(event))
        end = T0 + 1 + shape.repetitions * (shape.seconds + 2)
        if shape.cut:
            out.write('{"kind":"sample","t":')
        else:
            out.write(_dump({"kind": "session.end", "t": end, "status": "ok"}))
    return path


def events_per_second(shape: Shape) -> float:
    """About how many events a second of a repetition makes (to size a log)."""
    return len(shape.ping_hosts) / shape.ping_interval + 2


CORPUS: dict[str, Shape] = {
    "one": Shape(seed=1),
    "three-reps": Shape(seed=2, repetitions=3, seconds=40),
    "round-trip-two-pings": Shape(seed=3, round_trip=True, ping_hosts=("storage", "console")),
    "jittered-failed": Shape(seed=4, repetitions=2, seconds=30, jitter=0.3, failed=True),
    "disks": Shape(seed=5, disks=True, scenario="disk-iscsi-vs-local", seconds=40),
    "cut-short": Shape(seed=6, repetitions=2, seconds=30, cut=True, round_trip=True),
}
"""The logs whose reports must not change when the report's insides do."""


def write_ping_capture(path: Path, lines: int) -> Path:
    """``ping -D`` output of ``lines`` seqs at 0.2 s, one in 997 unanswered (``-O``), as
    iputils prints it (icmp_seq modulo 2^16): the input of the import tests and bench."""
    t = T0
    with path.open("w") as out:
        out.write("PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n")
        for seq in range(1, lines + 1):
            shown = seq % 65536  # ping prints icmp_seq modulo 2^16
            if seq % 997 == 0:
                out.write(f"[{t + 0.2:.6f}] no answer yet for icmp_seq={shown}\n")
            else:
                out.write(
                    f"[{t:.6f}] 64 bytes from 10.0.0.2: icmp_seq={shown} ttl=64 time=0.4 ms\n"
                )
            t += 0.2
    return path
