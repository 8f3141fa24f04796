"""A ping reply counts where its probe was sent, not where its answer was printed.

Found in a real Xen migration (migrate-ping --quick): probes sent during the
stop-and-copy waited in the storage node's ARP queue and were all answered 0.18 s
into the "after" phase, with round trips of 0.7-3 s; counted by their print time
they made the "after" RTT 318 ms where the guest answered in ~6 ms. Those round
trips measure the migration. The ping lines are ping -D -O's, read by the real parser.
"""

from __future__ import annotations

import pytest

from backend.events import Event, MigrationFinished, Phase
from backend.experiments.metrics import analyze
from backend.probes import PingParser, parse_lines

T0 = 1_800_000_000.0
INTERVAL = 0.2
# Its ends fall between probes (sent every 0.2 s from T0): "after" starts at its end.
MIGRATION = (T0 + 10.1, T0 + 20.1)


def reply(at: float, seq: int, rtt_ms: float) -> str:
    return f"[{at:.6f}] 64 bytes from 198.18.0.50: icmp_seq={seq} ttl=64 time={rtt_ms:g} ms"


def ping_lines() -> list[str]:
    """Every 0.2 s from T0 for 30 s, answered in 5 ms; the probes sent in 18.0-19.8 s are
    answered late, all at 20.18 s, as the ARP queue released them."""
    lines: list[tuple[float, str]] = []
    released = T0 + 20.18
    for i in range(150):
        sent, seq = T0 + i * INTERVAL, i + 1
        if T0 + 18.0 <= sent < T0 + 20.0:
            lines.append(
                (sent + INTERVAL, f"[{sent + INTERVAL:.6f}] no answer yet for icmp_seq={seq}")
            )
            lines.append((released, reply(released, seq, round((released - sent) * 1000))))
        else:
            lines.append((sent + 0.005, reply(sent + 0.005, seq, 5)))
    lines.sort(key=lambda item: item[0])  # as printed (stable: a seq's two lines in order)
    return [line for _, line in lines]


def events() -> list[Event]:
    start, end = MIGRATION
    timeline: list[Event] = [
        Phase(name="baseline", t=T0),
        Phase(name="migrating", t=start),
        MigrationFinished(domain="guest", source="xen1", dest="xen2", ok=True, t=end),
        Phase(name="after", t=end),
    ]
    samples = parse_lines(PingParser("storage"), ping_lines())
    return sorted([*timeline, *samples], key=lambda e: e.t if e.t is not None else 0.0)


def test_late_replies_of_probes_sent_during_the_migration_count_during_it() -> None:
    analysis = analyze(events())
    rtt = analysis.probes["ping.rtt_ms"]
    assert rtt.after == pytest.approx(5.0)  # the guest, answering after the migration
    assert rtt.baseline == pytest.approx(5.0)
    # Sent in 10.2-20.0 s: 40 answered in 5 ms, and the 10 of 18.0-19.8 s answered late.
    late = [round((20.18 - (18.0 + k * INTERVAL)) * 1000) for k in range(10)]
    assert rtt.during == pytest.approx((40 * 5.0 + sum(late)) / 50)
    assert rtt.counts == {"baseline": 51, "migrating": 50, "after": 49}
