"""ping and dbench in the formats other versions print (issue 13), on real captures.

Each capture's provenance is in tests/data/probes/README.md; the values asserted are the
ones its text states.
"""

from __future__ import annotations

from backend.events import Sample
from backend.probes import parse_lines
from backend.probes.dbench import DbenchParser
from backend.probes.ping import PingParser, lost_seqs, sample_kind
from tests.conftest import DATA

CAPTURES = DATA / "probes"


def ping(name: str, *, mangle: bool = False) -> tuple[PingParser, list[Sample]]:
    parser = PingParser("storage", clock=lambda: 0.0)
    lines = (CAPTURES / name).read_text().splitlines(keepends=True)
    if mangle:
        lines = [_pasted(line) for line in lines]
    return parser, parse_lines(parser, lines)


def _pasted(line: str) -> str:
    """A line as a terminal copy and paste leaves it: tabs, doubled spaces, CRLF."""
    return "\t" + line.rstrip("\n").replace(" ", "  ").replace(": ", ":\t") + " \r\n"


def of_kind(samples: list[Sample], kind: str) -> list[Sample]:
    return [s for s in samples if sample_kind(s) == kind]


def seqs(samples: list[Sample]) -> list[int]:
    return [int(s.values["seq"] or 0) for s in samples]


def summary(samples: list[Sample]) -> dict[str, float | None]:
    [found] = of_kind(samples, "summary")
    return found.values


# -- BusyBox ping ----------------------------------------------------------------------


def test_busybox_replies_and_summary() -> None:
    parser, samples = ping("ping-busybox-loopback-c10-i0.2.txt")
    replies = of_kind(samples, "reply")
    assert seqs(replies) == list(range(10))  # BusyBox counts from 0
    assert replies[0].values["rtt_ms"] == 0.041
    assert replies[0].values["ttl"] == 64.0
    assert replies[9].values["rtt_ms"] == 0.061
    assert of_kind(samples, "loss") == []
    values = summary(samples)
    assert values["transmitted"] == 10.0
    assert values["received"] == 10.0
    assert values["loss_pct"] == 0.0
    assert (values["rtt_min_ms"], values["rtt_avg_ms"], values["rtt_max_ms"]) == (
        0.041,
        0.066,
        0.077,
    )
    assert values["rtt_mdev_ms"] is None  # BusyBox prints none: never a guess
    assert values["time_ms"] is None
    assert values["pipe"] is None
    assert parser.target == "127.0.0.1"
    assert parser.lines_not_understood == 0


def test_busybox_gap_is_lost() -> None:
    _, samples = ping("ping-busybox-netns-blackhole-c25-i0.2.txt")
    assert seqs(of_kind(samples, "reply")) == [*range(8), *range(15, 25)]
    assert lost_seqs(samples) == list(range(8, 15))
    values = summary(samples)
    assert (values["transmitted"], values["received"], values["loss_pct"]) == (25.0, 18.0, 28.0)
    assert values["rtt_max_ms"] == 0.482


def test_busybox_trailing_losses_end_at_its_last_seq() -> None:
    # 10 sent, seqs 0-9: replies 0-5, so 6-9 lost (not 6-10 as iputils' 1-based seqs).
    _, samples = ping("ping-busybox-netns-blackhole-tail-c10-i0.2.txt")
    assert lost_seqs(samples) == [6, 7, 8, 9]
    assert summary(samples)["loss_pct"] == 40.0


def test_busybox_no_reply_at_all_loses_every_seq() -> None:
    parser, samples = ping("ping-busybox-netns-unreachable-c5.txt")
    assert lost_seqs(samples) == [0, 1, 2, 3, 4]
    values = summary(samples)
    assert (values["transmitted"], values["received"], values["loss_pct"]) == (5.0, 0.0, 100.0)
    assert values["rtt_min_ms"] is None
    assert parser.lines_not_understood == 0


# -- iputils -----------------------------------------------------------------------------


def test_iputils_unreachable_without_O_loses_every_seq() -> None:
    # Only "Destination Host Unreachable" lines: the losses come from the summary.
    for name in (
        "ping-netns-unreachable-noO-c5-i0.5.txt",
        "ping-netns-unreachable-D-noO-c5-i0.5.txt",
    ):
        parser, samples = ping(name)
        assert seqs(of_kind(samples, "error")) == [1, 2, 3, 4, 5]
        assert lost_seqs(samples) == [1, 2, 3, 4, 5]
        values = summary(samples)
        assert (values["transmitted"], values["received"], values["errors"]) == (5.0, 0.0, 5.0)
        assert values["loss_pct"] == 100.0
        assert values["pipe"] == 5.0
        assert parser.lines_not_understood == 0


def test_iputils_unreachable_with_D_keeps_its_times() -> None:
    _, samples = ping("ping-netns-unreachable-D-noO-c5-i0.5.txt")
    assert of_kind(samples, "error")[0].t == 1796457123.461063


def test_old_iputils_icmp_req() -> None:
    parser, samples = ping("ping-old-iputils-icmp_req-moler.txt")
    replies = of_kind(samples, "reply")
    assert seqs(replies) == [1, 2, 3, 7, 8]
    assert [r.values["rtt_ms"] for r in replies] == [0.080, 0.037, 0.045, 0.123, 0.056]
    assert {r.values["ttl"] for r in replies} == {64.0}
    assert lost_seqs(samples) == [4, 5, 6]  # the gap the sendmsg errors left
    assert parser.target == "10.0.2.15"
    # The shell prompt line is not ping's; "ping: sendmsg: ..." is ping's own diagnostic.
    assert parser.lines_not_understood == 1


def test_pasted_whitespace_reads_the_same() -> None:
    for name in (
        "ping-busybox-netns-blackhole-c25-i0.2.txt",
        "ping-netns-addr-removed-c45-i0.2.txt",
        "ping-old-iputils-icmp_req-moler.txt",
    ):
        clean_parser, clean = ping(name)
        pasted_parser, pasted = ping(name, mangle=True)
        assert [s.values for s in pasted] == [s.values for s in clean]
        assert [s.t for s in pasted] == [s.t for s in clean]
        assert pasted_parser.lines_not_understood == clean_parser.lines_not_understood


def test_ping_unknown_lines_are_counted_not_raised() -> None:
    parser = PingParser("storage", clock=lambda: 0.0)
    lines = [
        "PING 127.0.0.1 (127.0.0.1): 56 data bytes\n",
        "64 bytes from 127.0.0.1: seq=0 ttl=64 time=0.041 ms\n",
        "\x1b[31mgarbage\x1b[0m\n",
        "64 bytes from 127.0.0.1: seq=zero ttl=64 time=0.041 ms\n",
        "user@host:~$ ^C\n",
        "64 bytes from 127.0.0.1: seq=1 ttl=64 time=0.066 ms\n",
    ]
    samples = parse_lines(parser, lines)
    assert seqs(of_kind(samples, "reply")) == [0, 1]
    assert parser.lines_not_understood == 3


def test_ping_line_after_totals_that_is_no_rtt_line_is_counted() -> None:
    parser = PingParser("storage", clock=lambda: 0.0)
    lines = ["3 packets transmitted, 3 packets received, 0% packet loss\n", "$ exit\n"]
    samples = parse_lines(parser, lines)
    assert summary(samples)["rtt_avg_ms"] is None
    assert parser.lines_not_understood == 1


# -- dbench -s / -S ----------------------------------------------------------------------


def dbench(name: str) -> tuple[DbenchParser, list[Sample]]:
    parser = DbenchParser("guest", clock=lambda: 1000.0)
    return parser, parse_lines(parser, (CAPTURES / name).read_text().splitlines(keepends=True))


def test_dbench_sync_open_summary() -> None:
    parser, samples = dbench("dbench-s-t5-c2.txt")
    [result] = [s for s in samples if "summary" in s.values]
    assert result.values["throughput_mb_per_s"] == 235.199
    assert (result.values["clients"], result.values["procs"]) == (2.0, 2.0)
    assert result.values["max_latency_ms"] == 9.865
    execute = [s for s in samples if s.values.get("phase") == 1.0]
    assert [s.values["mb_per_s"] for s in execute] == [252.50, 241.69, 237.16, 235.20]
    assert parser.lines_not_understood == 0


def test_dbench_sync_open_and_dirs_summary() -> None:
    parser, samples = dbench("dbench-s-S-t5-c2.txt")
    [result] = [s for s in samples if "summary" in s.values]
    assert result.values["throughput_mb_per_s"] == 181.12
    assert result.values["max_latency_ms"] == 5.034
    assert parser.lines_not_understood == 0


def test_dbench_unknown_lines_are_counted_not_raised() -> None:
    parser = DbenchParser("guest", clock=lambda: 1000.0)
    lines = (CAPTURES / "dbench-t5-c2.txt").read_text().splitlines(keepends=True)
    lines[3:3] = ["Segmentation fault (core dumped)\n", "\tTotally unexpected\r\n"]
    samples = parse_lines(parser, lines)
    assert any("summary" in s.values for s in samples)
    assert parser.lines_not_understood == 2


def test_first_seqs_unanswered_are_lost_when_the_header_was_read() -> None:
    # The address appeared 4 s in: the first replies are seq 7 (iputils from 1,
    # BusyBox from 0); the seqs before them got none.
    _, samples = ping("ping-netns-late-addr-noO-c12-i0.5.txt")
    assert seqs(of_kind(samples, "reply")) == list(range(7, 13))
    assert lost_seqs(samples) == [1, 2, 3, 4, 5, 6]
    values = summary(samples)
    assert (values["transmitted"], values["received"], values["errors"]) == (12.0, 6.0, 6.0)
    assert (values["rtt_max_ms"], values["pipe"]) == (1031.645, 6.0)
    _, samples = ping("ping-busybox-netns-late-addr-c12-i0.5.txt")
    assert seqs(of_kind(samples, "reply")) == list(range(7, 12))
    assert lost_seqs(samples) == [0, 1, 2, 3, 4, 5, 6]
    assert summary(samples)["loss_pct"] == 58.0
    assert summary(samples)["rtt_max_ms"] == 1022.754


def test_without_the_header_the_first_seqs_are_not_called_lost() -> None:
    # Joined mid-stream (the header not in the paste): nothing before is ours to count.
    lines = (CAPTURES / "ping-netns-late-addr-noO-c12-i0.5.txt").read_text().splitlines()
    parser = PingParser("storage", clock=lambda: 0.0)
    samples = parse_lines(parser, lines[8:13])
    assert seqs(of_kind(samples, "reply")) == [8, 9, 10, 11, 12]
    assert lost_seqs(samples) == []
