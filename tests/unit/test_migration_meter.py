"""MigrationMeter: each migration measured once the guest answers ping again."""

from __future__ import annotations

import pytest

from backend.events import Event, MigrationFinished, MigrationMeasured, MigrationProgress
from backend.experiments.migration_meter import GIVE_UP_S, MigrationMeter, physical_limit_s
from backend.probes.ping import PingParser
from tests.conftest import DATA

# Real `ping -D -O -i 0.2` output: seqs 9-15 unanswered (a blackhole route for 1.5 s).
BLACKHOLE = DATA / "probes" / "ping-netns-blackhole-c25-i0.2.txt"
LAST_REPLY_BEFORE, FIRST_REPLY_AFTER = 1795771521.943673, 1795771523.575338


def ping_samples(lines: list[str]) -> list[Event]:
    parser = PingParser("storage")
    samples: list[Event] = []
    for line in lines:
        samples.extend(parser.feed(line))
    return samples


def migration(start: float, end: float) -> list[Event]:
    common = {"domain": "guest", "source": "xen1", "dest": "xen2"}
    return [
        MigrationProgress(t=start, phase="started", **common),
        MigrationFinished(
            t=end, ok=True, total_time_ms=(end - start) * 1000, downtime_ms=150.0, **common
        ),
    ]


def feed_in_time_order(meter: MigrationMeter, events: list[Event]) -> None:
    for event in sorted(events, key=lambda e: e.t or 0.0):
        meter.feed(event)


def test_the_migration_is_measured_when_the_guest_answers_again() -> None:
    published: list[Event] = []
    meter = MigrationMeter(published.append, memory_mb=256, link_mbit=100)
    samples = ping_samples(BLACKHOLE.read_text().splitlines())
    events = samples + migration(1795771521.0, 1795771523.2)
    before = [e for e in events if (e.t or 0.0) < FIRST_REPLY_AFTER]
    feed_in_time_order(meter, before)
    assert published == []  # finished, but the guest has not answered since
    feed_in_time_order(meter, [e for e in events if (e.t or 0.0) >= FIRST_REPLY_AFTER])
    [measured] = published
    assert isinstance(measured, MigrationMeasured)
    assert (measured.source, measured.dest, measured.ok) == ("xen1", "xen2", True)
    assert measured.unreachable_s == pytest.approx(FIRST_REPLY_AFTER - LAST_REPLY_BEFORE)
    assert measured.lost_probes == 7
    assert measured.total_s == pytest.approx(2.2) and measured.downtime_ms == 150.0
    assert measured.limit_s == pytest.approx(256 * 2**20 * 8 / 100e6)
    assert measured.over_limit == pytest.approx(2.2 / measured.limit_s)
    assert measured.notes == []


def test_without_ping_it_is_measured_at_once_and_says_what_is_unknown() -> None:
    published: list[Event] = []
    meter = MigrationMeter(published.append, memory_mb=1024, link_mbit=100)
    feed_in_time_order(meter, migration(100.0, 194.0))
    [measured] = published
    assert isinstance(measured, MigrationMeasured)
    assert measured.unreachable_s is None and measured.lost_probes is None
    assert measured.total_s == pytest.approx(94.0)
    assert measured.over_limit == pytest.approx(94.0 / physical_limit_s(1024, 100))
    assert "unreachable time is unknown" in measured.notes[0]


def test_a_guest_that_stays_silent_is_given_up_on_by_pings_own_clock() -> None:
    published: list[Event] = []
    meter = MigrationMeter(published.append, memory_mb=256, link_mbit=100)
    lines = BLACKHOLE.read_text().splitlines()[:16]  # replies 1-8, then seqs 9-15 lost
    t, seq = 1795771523.575256, 15
    while t < 1795771523.2 + GIVE_UP_S + 1:  # the guest never answers again
        t, seq = t + 0.2, seq + 1
        lines.append(f"[{t:.6f}] no answer yet for icmp_seq={seq}")
    events = ping_samples(lines) + migration(1795771521.0, 1795771523.2)
    feed_in_time_order(meter, [e for e in events if (e.t or 0.0) < 1795771523.2 + GIVE_UP_S])
    assert published == []
    feed_in_time_order(meter, [e for e in events if (e.t or 0.0) >= 1795771523.2 + GIVE_UP_S])
    [measured] = published
    assert isinstance(measured, MigrationMeasured)
    assert measured.unreachable_s is None and measured.lost_probes is not None
    assert measured.lost_probes > 7
    assert any("no reply" in note for note in measured.notes)


def test_the_session_end_measures_a_migration_still_waiting() -> None:
    published: list[Event] = []
    meter = MigrationMeter(published.append, memory_mb=256, link_mbit=100)
    lines = BLACKHOLE.read_text().splitlines()[:14]  # replies 1-8, losses 9-13, then it ends
    feed_in_time_order(meter, ping_samples(lines) + migration(1795771521.0, 1795771522.8))
    assert published == []
    meter.flush()
    meter.flush()  # once only
    [measured] = published
    assert isinstance(measured, MigrationMeasured) and measured.unreachable_s is None


def test_the_line_says_what_the_network_saw() -> None:
    measured = MigrationMeasured(
        domain="guest", source="xen1", dest="xen2", ok=True, total_s=94.0, downtime_ms=None,
        unreachable_s=1.6317, lost_probes=7, limit_s=physical_limit_s(1024, 100),
    )  # fmt: skip
    assert measured.network_text() == (
        "unreachable 1.63 s (7 pings lost), 1.1x the memory/link limit (85.9 s)"
    )
    unknown = measured.model_copy(update={"unreachable_s": None, "lost_probes": None})
    assert unknown.network_text().startswith("unreachable unknown, ")
    one_lost = measured.model_copy(update={"unreachable_s": 0.2, "lost_probes": 1})
    assert one_lost.network_text().startswith("unreachable 0.20 s (1 ping lost), ")
    none_lost = measured.model_copy(update={"unreachable_s": 0.0, "lost_probes": 0})
    assert none_lost.network_text().startswith("no ping lost, ")
