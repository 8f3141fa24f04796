"""Metrics over hand-built event streams whose answers are known in advance.

Ping samples come from the real PingParser fed with ping -D -O lines built here
(so their shape is the parser's own); the other probes' samples are made
directly with the values keys their parsers use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pytest

from backend.events import (
    CommandFinished,
    DiskStarted,
    Event,
    MigrationFinished,
    MigrationProgress,
    Note,
    Phase,
    RepetitionStarted,
    Sample,
)
from backend.experiments.metrics import (
    METRICS,
    analyze,
    change_pct,
    stats,
    t_quantile_975,
)
from backend.probes import PROBES, PingParser, parse_lines
from backend.session import SessionLogWriter, make_header, read_session

T0 = 1_800_000_000.0


# --------------------------------------------------------------------------- builders


def ping_samples(
    start: float,
    count: int,
    *,
    interval: float = 0.2,
    silent: Iterable[range] = (),
    host: str = "storage",
    rtt_ms: float = 0.5,
) -> list[Sample]:
    """``count`` echo requests from ``start``; those whose index is in ``silent`` go
    unanswered ("no answer yet" printed when the next one is sent, as ping -O does)."""
    quiet = {i for span in silent for i in span}
    lines: list[tuple[float, str]] = []
    for i in range(count):
        sent = start + i * interval
        seq = i + 1
        if i in quiet:
            lines.append(
                (sent + interval, f"[{sent + interval:.6f}] no answer yet for icmp_seq={seq}")
            )
        else:
            at = sent + rtt_ms / 1000
            lines.append(
                (at, f"[{at:.6f}] 64 bytes from 198.18.0.2: icmp_seq={seq} ttl=64 time={rtt_ms} ms")
            )
    lines.sort(key=lambda item: item[0])
    return parse_lines(PingParser(host), [line for _, line in lines])


def cpu(t: float, eps: float, host: str = "guest") -> Sample:
    values: dict[str, float | None] = {"elapsed_s": 1.0, "threads": 20.0, "eps": eps}
    return Sample(probe="sysbench-cpu", host=host, t=t, values=values, unit={"eps": "events/s"})


def dbench(t: float, mb: float | None, latency: float, phase: float = 1.0) -> Sample:
    values: dict[str, float | None] = {
        "phase": phase,
        "elapsed_s": 1.0,
        "clients": 2.0,
        "mb_per_s": mb,
        "mb_per_s_1s": mb,
        "latency_ms": latency,
    }
    return Sample(probe="dbench", host="guest", t=t, values=values)


def in_order(*groups: Iterable[Event]) -> list[Event]:
    """One stream in time order (ties keep their group order: phases before samples)."""
    merged = [event for group in groups for event in group]
    return sorted(merged, key=lambda e: e.t)


def one_migration(
    start: float,
    end: float,
    *,
    source: str = "xen1",
    dest: str = "xen2",
    total_ms: float | None = None,
    downtime_ms: float | None = None,
    finished: bool = True,
) -> list[Event]:
    events: list[Event] = [Phase(name="migrating", t=start)]
    for k, t in enumerate(range(int(start) + 1, int(end))):
        events.append(
            MigrationProgress(
                domain="guest", source=source, dest=dest, t=float(t), iteration=k + 1,
                transferred_bytes=(k + 1) * 2**20,
            )
        )  # fmt: skip
    if finished:
        events.append(
            MigrationFinished(
                domain="guest", source=source, dest=dest, ok=True, t=end, total_time_ms=total_ms,
                downtime_ms=downtime_ms, transferred_bytes=2**30, iterations=29,
            )
        )  # fmt: skip
        events.append(Phase(name="after", t=end))
    return events


def study_run(t0: float = T0, *, dip: float = 80.0) -> list[Event]:
    """warm-up 0-20 s, baseline 20-40 s, migration 40-60 s, after 60-100 s.

    ping every 0.2 s, silent from 50.0 s for 3 s (15 requests) and for one request
    at 10 s (outside the migration); sysbench 100 events/s, 90 during the
    migration, ``dip`` in its 11th second; dbench latency 10 ms, 15 during, 30 once.
    """
    phases = [Phase(name="warmup", t=t0), Phase(name="baseline", t=t0 + 20)]
    migration = one_migration(t0 + 40, t0 + 60)
    pings = ping_samples(t0, 500, silent=[range(250, 265), range(50, 51)])
    cpus = []
    disks = []
    for k in range(100):
        t = t0 + k + 0.5
        during = 40 < k + 0.5 < 60
        cpus.append(cpu(t, dip if k == 50 else 90.0 if during else 100.0))
        disks.append(dbench(t, 20.0, 30.0 if k == 45 else 15.0 if during else 10.0))
    return in_order(phases, migration, pings, cpus, disks)


# --------------------------------------------------------------------------- migrations


def test_the_gap_during_the_migration_is_the_unreachable_time() -> None:
    analysis = analyze(study_run(), t0=T0)
    (migration,) = analysis.migrations
    # Last reply before the gap: the request of 49.8 s; first after: the one of 53.0 s.
    assert migration.unreachable_s == pytest.approx(3.2, abs=1e-6)
    assert migration.lost_probes == 15  # the lost request at 10 s is not the migration's
    assert (migration.source, migration.dest) == ("xen1", "xen2")
    assert migration.started_at == T0 + 40
    assert migration.total_s == pytest.approx(20.0)  # no hypervisor total: the window
    assert migration.downtime_ms is None  # xl reports none: unknown, not 0
    assert migration.bytes_sent == 2**30 and migration.iterations == 29
    assert migration.finished and migration.ok


def test_no_loss_means_zero_and_no_ping_means_unknown() -> None:
    quiet = in_order(one_migration(T0 + 10, T0 + 20), ping_samples(T0, 200))
    (migration,) = analyze(quiet).migrations
    assert (migration.unreachable_s, migration.lost_probes) == (0.0, 0)
    (blind,) = analyze(one_migration(T0 + 10, T0 + 20)).migrations
    assert (blind.unreachable_s, blind.lost_probes) == (None, None)
    # A ping that started after the migration cannot tell either.
    late = in_order(one_migration(T0 + 10, T0 + 20), ping_samples(T0 + 30, 50))
    (after,) = analyze(late).migrations
    assert after.unreachable_s is None


def test_a_gap_that_never_ends_is_unknown_with_a_note() -> None:
    events = in_order(
        one_migration(T0 + 10, T0 + 20, finished=False),
        ping_samples(T0, 100, silent=[range(60, 100)]),
    )
    (migration,) = analyze(events).migrations
    assert migration.unreachable_s is None and migration.lost_probes == 40
    assert not migration.finished and migration.total_s is None and migration.ok is None
    assert any("until the end of the log" in note for note in migration.notes)
    assert any("did not finish" in note for note in migration.notes)


def test_hypervisor_numbers_win_over_the_window() -> None:
    events = one_migration(T0, T0 + 5, total_ms=4321.0, downtime_ms=3.0)
    (migration,) = analyze(events).migrations
    assert migration.total_s == pytest.approx(4.321)
    assert migration.downtime_ms == 3.0


def test_a_migration_without_phase_starts_at_its_first_progress() -> None:
    events: list[Event] = [
        MigrationProgress(domain="g", source="a", dest="b", t=T0 + 3, transferred_bytes=5),
        MigrationFinished(domain="g", source="a", dest="b", ok=False, t=T0 + 7, error="refused"),
    ]
    analysis = analyze(events)
    (migration,) = analysis.migrations
    assert migration.started_at == T0 + 3 and migration.total_s == pytest.approx(4.0)
    assert migration.bytes_sent == 5 and migration.ok is False and migration.error == "refused"
    assert any("failed: refused" in note for note in analysis.notes)


# --------------------------------------------------------------------------- probes


def test_known_baseline_and_dip() -> None:
    probes = analyze(study_run(), t0=T0).probes
    cpu_metrics = probes["sysbench-cpu.eps"]
    assert cpu_metrics.baseline == pytest.approx(100.0)
    assert cpu_metrics.during == pytest.approx((19 * 90 + 80) / 20)
    assert cpu_metrics.after == pytest.approx(100.0)
    assert cpu_metrics.during_change_pct == pytest.approx(-10.5)
    assert cpu_metrics.worst_change_pct == pytest.approx(-20.0)  # "at the lowest point"
    assert cpu_metrics.worst_at == T0 + 50
    assert cpu_metrics.counts == {"warmup": 20, "baseline": 20, "migrating": 20, "after": 40}


def test_worse_is_higher_for_latencies() -> None:
    probes = analyze(study_run(), t0=T0).probes
    latency = probes["dbench.latency_ms"]
    assert latency.baseline == pytest.approx(10.0)
    assert latency.worst_change_pct == pytest.approx(200.0)  # the 30 ms second, not 15
    rtt = probes["ping.rtt_ms"]
    assert rtt.baseline == pytest.approx(0.5) and rtt.during_change_pct == pytest.approx(0.0)
    # Lost requests are no rtt readings: the during mean is of the replies only.
    assert rtt.counts["migrating"] == 100 - 15


def test_worst_window_averages_within_one_second() -> None:
    # Ten ping replies a second; one second holds 9 at 1 ms and one at 11 ms: mean 2 ms.
    events: list[Event] = [Phase(name="baseline", t=T0), *one_migration(T0 + 10, T0 + 20)]
    for i in range(200):
        t = T0 + i * 0.1
        rtt = 11.0 if i == 150 else 1.0
        values: dict[str, float | None] = {"seq": float(i + 1), "rtt_ms": rtt, "ttl": 64.0}
        events.append(Sample(probe="ping", host="storage", t=t + 0.001, values=values))
    rtt_metrics = analyze(in_order(events)).probes["ping.rtt_ms"]
    assert rtt_metrics.worst_change_pct == pytest.approx(100.0)


def test_dbench_warmup_lines_and_summaries_are_not_readings() -> None:
    events: list[Event] = [
        dbench(T0, 999.0, 999.0, phase=0.0),
        dbench(T0 + 1, 20.0, 5.0),
        Sample(probe="dbench", host="guest", t=T0 + 2, values={"summary": 1.0, "latency_ms": 7.0}),
    ]
    series = analyze(events).series
    assert series["dbench.mb_per_s_1s"].points == ((T0 + 1, 20.0),)
    assert series["dbench.latency_ms"].points == ((T0 + 1, 5.0),)


def test_the_same_probe_on_two_hosts_keeps_two_series() -> None:
    events = in_order(
        ping_samples(T0, 10, host="storage", rtt_ms=0.5),
        ping_samples(T0, 10, host="console", rtt_ms=2.0),
    )
    probes = analyze(events).probes
    assert probes["ping@storage.rtt_ms"].baseline == pytest.approx(0.5)
    assert probes["ping@console.rtt_ms"].baseline == pytest.approx(2.0)


def test_a_log_without_phases_is_baseline_then_after() -> None:
    # Without a "migrating" phase the window opens at the first progress event (11 s).
    events = in_order([cpu(T0 + k, 100.0 if k <= 10 else 50.0) for k in range(30)])
    migration = [e for e in one_migration(T0 + 10, T0 + 20) if not isinstance(e, Phase)]
    events = in_order(events, migration)
    probes = analyze(events).probes["sysbench-cpu.eps"]
    assert probes.baseline == pytest.approx(100.0)
    assert probes.counts["after"] > 0 and probes.during_change_pct == pytest.approx(-50.0)


def test_every_metric_names_a_key_its_parser_produces() -> None:
    for spec in METRICS:
        assert spec.probe in PROBES
        # A series value is either in the probe's units table or a count-like key.
        units = PROBES[spec.probe].units
        assert units.get(spec.key, spec.unit) == spec.unit


# --------------------------------------------------------------------------- repetitions


def repeated(totals: list[float], dips: list[float]) -> list[Event]:
    events: list[Event] = []
    for number, (total, dip) in enumerate(zip(totals, dips, strict=True), start=1):
        t0 = T0 + 1000 * number
        events.append(RepetitionStarted(number=number, of=len(totals), t=t0))
        events += [Phase(name="baseline", t=t0 + 0.1)]
        events += one_migration(t0 + 10, t0 + 20, total_ms=total * 1000)
        events += [cpu(t0 + k + 0.5, dip if 10 < k + 0.5 < 20 else 100.0) for k in range(30)]
    return in_order(events)


def test_repetitions_mean_std_and_confidence_interval() -> None:
    analysis = analyze(repeated([10.0, 12.0, 14.0], [80.0, 90.0, 100.0]))
    assert [r.number for r in analysis.repetitions] == [1, 2, 3]
    total = analysis.summary["migration1.total_s"]
    assert total.values == (10.0, 12.0, 14.0)
    assert total.mean == pytest.approx(12.0) and total.std == pytest.approx(2.0)
    half = 4.302653 * 2.0 / math.sqrt(3)
    assert total.ci95 == pytest.approx((12.0 - half, 12.0 + half))
    change = analysis.summary["sysbench-cpu.eps.during_change_pct"]
    assert change.values == pytest.approx((-20.0, -10.0, 0.0))
    assert change.mean == pytest.approx(-10.0) and change.std == pytest.approx(10.0)
    # Each repetition has its own metrics, and the pool has them all.
    assert analysis.repetitions[0].probes["sysbench-cpu.eps"].during == pytest.approx(80.0)
    assert analysis.probes["sysbench-cpu.eps"].during == pytest.approx(90.0)
    assert [m.repetition for m in analysis.migrations] == [1, 2, 3]


def test_a_round_trip_keeps_its_legs_apart() -> None:
    events: list[Event] = []
    for number in (1, 2):
        t0 = T0 + 1000 * number
        events.append(RepetitionStarted(number=number, t=t0))
        events += one_migration(t0 + 10, t0 + 20, total_ms=10_000.0 * number)
        events.append(Phase(name="between", t=t0 + 20))
        events += one_migration(t0 + 30, t0 + 35, source="xen2", dest="xen1", total_ms=5_000.0)
    analysis = analyze(in_order(events))
    legs = [(m.repetition, m.number, m.source, m.dest) for m in analysis.migrations]
    there, back = ("xen1", "xen2"), ("xen2", "xen1")
    assert legs == [(1, 1, *there), (1, 2, *back), (2, 1, *there), (2, 2, *back)]
    assert analysis.summary["migration1.total_s"].values == (10.0, 20.0)
    assert analysis.summary["migration2.total_s"].values == (5.0, 5.0)
    assert analysis.summary["migration2.total_s"].std == 0.0


def test_one_value_has_no_spread() -> None:
    single = stats([3.0, None])
    assert (single.n, single.mean, single.std, single.ci95) == (1, 3.0, None, None)
    assert stats([]).mean is None
    assert change_pct(5.0, 0.0) is None and change_pct(None, 1.0) is None
    assert change_pct(90.0, 100.0) == pytest.approx(-10.0)


def _t_cdf(x: float, df: int) -> float:
    """Student's t CDF by Simpson's rule on its density (independent of the table)."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(u: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(u * u / df))

    n = 800  # Simpson's error falls as n**-4: far below the 1e-6 needed here
    h = x / n
    total = pdf(0.0) + pdf(x) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, n))
    return 0.5 + total * h / 3


@pytest.mark.parametrize("df", [1, 2, 3, 5, 9, 10, 29, 30, 31, 35, 45, 50, 80, 100, 200, 1000])
def test_t_quantile_matches_the_distribution(df: int) -> None:
    low, high = 1.0, 20.0
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf(mid, df) < 0.975 else (low, mid)
    assert t_quantile_975(df) == pytest.approx(low, abs=1e-4 if df > 30 else 2e-5)


def test_t_quantile_refuses_nonsense() -> None:
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError):
            t_quantile_975(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- disks, notes


def test_disk_comparison_means_per_disk() -> None:
    events: list[Event] = []
    for disk, start, mb in (("local", T0, 36.0), ("iscsi", T0 + 20, 18.0)):
        events += [DiskStarted(disk=disk, t=start), Phase(name="warmup", t=start)]
        events += [dbench(start + k + 0.5, 999.0, 1.0) for k in range(10)]
        events.append(Phase(name="baseline", t=start + 10))
        events += [dbench(start + 10 + k + 0.5, mb, 150.0 if disk == "local" else 210.0)
                   for k in range(10)]  # fmt: skip
    analysis = analyze(in_order(events))
    assert analysis.disks == ("local", "iscsi")
    rows = {row.name: row for row in analysis.disk_rows}
    assert rows["dbench.mb_per_s_1s"].means == {"local": 36.0, "iscsi": 18.0}
    assert rows["dbench.mb_per_s_1s"].change_pct == pytest.approx(-50.0)
    assert rows["dbench.latency_ms"].change_pct == pytest.approx(40.0)
    assert analysis.migrations == ()


def test_failed_commands_and_warnings_become_notes() -> None:
    events: list[Event] = [
        CommandFinished(host="xen1", cmd_id=1, argv=["dbench", "-t", "3"], exit_status=1,
                        duration_s=0.1),
        CommandFinished(host="storage", cmd_id=2, argv=["ping", "x"], exit_status=None,
                        duration_s=9.0, failure="cancelled"),
        CommandFinished(host="xen2", cmd_id=3, argv=["true"], exit_status=0, duration_s=0.0),
        Note(text="guest clock jumped", level="warning"),
        Note(text="just saying"),
    ]  # fmt: skip
    notes = analyze(events).notes
    assert notes == ("xen1: dbench -t 3: exit status 1", "warning: guest clock jumped")


async def test_the_markers_survive_the_session_log(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    writer = await SessionLogWriter.create(path, make_header(scenario="migrate-ping"))
    for event in (RepetitionStarted(number=2, of=3), DiskStarted(disk="iscsi")):
        writer.write(event)
    await writer.close()
    events = read_session(path).events
    assert isinstance(events[0], RepetitionStarted) and events[0].number == 2
    assert isinstance(events[1], DiskStarted) and events[1].disk == "iscsi"


def test_readings_before_the_first_repetition_count_nowhere() -> None:
    events: list[Event] = [
        cpu(T0, 5.0),  # while the guest booted
        RepetitionStarted(number=1, of=1, t=T0 + 1),
        Phase(name="baseline", t=T0 + 1),
        cpu(T0 + 2, 100.0),
    ]
    analysis = analyze(events)
    assert analysis.probes["sysbench-cpu.eps"].baseline == 100.0
    assert analysis.probes["sysbench-cpu.eps"].counts == {"baseline": 1}
    assert analysis.phase_at(T0) is None and analysis.phase_at(T0 + 2) == "baseline"
