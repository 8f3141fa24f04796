"""ping: the builder, the parser on real captures (tests/data/probes/README.md), a real run."""

from __future__ import annotations

import asyncio
import time

import pytest

from backend.events import Sample
from backend.probes import PROBES, parse_lines
from backend.probes.ping import (
    Gap,
    PingParser,
    lost_seqs,
    ping_command,
    sample_kind,
    unreachable_gaps,
)
from tests.conftest import DATA, need

CAPTURES = DATA / "probes"


def parse(name: str) -> list[Sample]:
    # The clock must not be used where ping -D gave a time: 0.0 would show.
    parser = PingParser("storage", clock=lambda: 0.0)
    return parse_lines(parser, (CAPTURES / name).read_text().splitlines(keepends=True))


def of_kind(samples: list[Sample], kind: str) -> list[Sample]:
    return [s for s in samples if sample_kind(s) == kind]


def seqs(samples: list[Sample]) -> list[int]:
    return [int(s.values["seq"] or 0) for s in samples]


# -- builder -----------------------------------------------------------------------


def test_command_default() -> None:
    assert ping_command("198.18.0.2") == [
        "ping", "-D", "-O", "-n", "-i", "0.2", "-W", "1", "198.18.0.2",
    ]  # fmt: skip


def test_command_fast_interval_count_family() -> None:
    argv = ping_command("::1", interval_s=0.01, count=500, family=6)
    assert argv == [
        "ping", "-D", "-O", "-n", "-i", "0.01", "-W", "1", "-c", "500", "-6", "::1",
    ]  # fmt: skip


def test_a_duration_is_a_count_of_probes_never_a_deadline() -> None:
    # -w would end ping at the first "Destination Host Unreachable" (see the real run in
    # tests/integration/test_ping_through_errors.py).
    assert ping_command("198.18.0.2", interval_s=0.2, duration_s=30) == [
        "ping", "-D", "-O", "-n", "-i", "0.2", "-W", "1", "-c", "150", "198.18.0.2",
    ]  # fmt: skip
    assert ping_command("198.18.0.2", interval_s=0.3, duration_s=1)[-2:] == ["4", "198.18.0.2"]
    with pytest.raises(ValueError, match="not both"):
        ping_command("198.18.0.2", count=3, duration_s=3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"address": "-f"},
        {"address": ""},
        {"address": "1.2.3.4; reboot"},
        {"address": "127.0.0.1", "interval_s": 0.0},
        {"address": "127.0.0.1", "interval_s": 0.0005},
        {"address": "127.0.0.1", "count": 0},
        {"address": "127.0.0.1", "count": True},
        {"address": "127.0.0.1", "reply_timeout_s": 0},
        {"address": "127.0.0.1", "duration_s": 0},
        {"address": "127.0.0.1", "duration_s": float("inf")},
    ],
)
def test_command_refuses(kwargs: dict[str, object]) -> None:
    kwargs = dict(kwargs)
    address = kwargs.pop("address")
    with pytest.raises(ValueError):
        ping_command(address, **kwargs)  # type: ignore[arg-type]


# -- captures ----------------------------------------------------------------------


def test_loopback_replies_and_summary() -> None:
    samples = parse("ping-loopback-c10-i0.2.txt")
    replies = of_kind(samples, "reply")
    assert seqs(replies) == list(range(1, 11))
    first, last = replies[0], replies[-1]
    assert first.t == 1795771513.961109
    assert first.values == {"seq": 1, "rtt_ms": 0.043, "ttl": 64}
    assert first.unit == {"rtt_ms": "ms"}
    assert first.probe == "ping" and first.host == "storage"
    assert last.t == 1795771515.795602 and last.values["rtt_ms"] == 0.030
    assert of_kind(samples, "loss") == []
    assert unreachable_gaps(samples) == []
    summary = samples[-1]
    assert sample_kind(summary) == "summary"
    assert summary.t == last.t  # the summary has no -D stamp: the last one stands
    assert summary.values == {
        "summary": 1.0,
        "transmitted": 10,
        "received": 10,
        "duplicates": 0,
        "corrupted": 0,
        "errors": 0,
        "loss_pct": 0,
        "time_ms": 1835,
        "rtt_min_ms": 0.030,
        "rtt_avg_ms": 0.035,
        "rtt_max_ms": 0.047,
        "rtt_mdev_ms": 0.005,
        "pipe": 1,
        "ipg_ms": None,
        "ewma_ms": None,
    }


def test_blackhole_losses_and_gap() -> None:
    samples = parse("ping-netns-blackhole-c25-i0.2.txt")
    losses = of_kind(samples, "loss")
    assert seqs(losses) == list(range(9, 16))
    assert losses[0].t == 1795771522.351403  # stamped when seq 10 was sent
    assert losses[0].values == {"seq": 9, "rtt_ms": None, "lost": 1.0}
    assert len(of_kind(samples, "reply")) == 18
    assert lost_seqs(samples) == list(range(9, 16))
    [gap] = unreachable_gaps(samples)
    assert gap == Gap(1795771521.943673, 1795771523.575338, 7, 9, 15)
    assert gap.duration_s == pytest.approx(1.631665)
    summary = samples[-1].values
    assert (summary["transmitted"], summary["received"], summary["loss_pct"]) == (25, 18, 28)


def test_address_removed_late_replies_errors_and_repeats() -> None:
    samples = parse("ping-netns-addr-removed-c45-i0.2.txt")
    # "no answer yet for icmp_seq=20" is printed 5 times (sends failing while
    # ARP is unresolved): one loss sample.
    losses = of_kind(samples, "loss")
    assert seqs(losses) == list(range(9, 30))
    errors = of_kind(samples, "error")
    assert seqs(errors) == list(range(9, 21))
    assert errors[0].values == {"seq": 9, "icmp_error": 1.0}
    assert errors[0].t == 1795771599.491419
    replies = of_kind(samples, "reply")
    late = [s for s in replies if s.values.get("late") == 1.0]
    assert seqs(late) == list(range(21, 30))
    assert late[0].values["rtt_ms"] == 2025  # integer format from 100 ms up
    assert late[0].t == 1795771601.699577
    assert "late" not in replies[-1].values
    # Only seqs that never got a reply are lost: 9..20, ping's "+12 errors".
    assert lost_seqs(samples) == list(range(9, 21))
    [gap] = unreachable_gaps(samples)
    assert gap == Gap(1795771596.219665, 1795771601.699577, 12, 9, 20)
    summary = samples[-1].values
    assert summary["errors"] == 12 and summary["received"] == 33
    assert summary["loss_pct"] == 26.6667
    assert summary["rtt_max_ms"] == 2025.363
    assert summary["pipe"] == 12  # "rtt ... ms, pipe 12"


def test_unreachable_only() -> None:
    samples = parse("ping-netns-unreachable-c10-i0.5.txt")
    losses = of_kind(samples, "loss")
    # 1..9 from -O; 10, the last probe, from the summary's "10 packets transmitted".
    assert seqs(losses) == list(range(1, 11))
    assert losses[-1].t == 1795771575.363326
    # seq 6's error came before its "no answer yet" line: still one loss.
    assert seqs(of_kind(samples, "error")) == [1, 2, 3, 4, 5, 6]
    assert of_kind(samples, "reply") == []
    assert unreachable_gaps(samples) == [Gap(None, None, 10, 1, 10)]
    summary = samples[-1].values
    assert summary["received"] == 0 and summary["errors"] == 6
    assert summary["loss_pct"] == 100 and summary["time_ms"] == 4626
    assert summary["rtt_avg_ms"] is None
    assert summary["pipe"] == 6  # alone on the line after the totals


def test_fast_interval_loopback() -> None:
    samples = parse("ping-loopback-c200-i0.01.txt")
    replies = of_kind(samples, "reply")
    assert seqs(replies) == list(range(1, 201))
    assert replies[1].values["rtt_ms"] == 0.012
    assert samples[-1].values["time_ms"] == 3189  # 16 ms a probe, not 10: timer slack


def test_fast_interval_blackhole_stopped_by_sigint() -> None:
    samples = parse("ping-netns-blackhole-i0.01-sigint.txt")
    assert len(of_kind(samples, "reply")) == 157
    assert lost_seqs(samples) == list(range(64, 95))
    [gap] = unreachable_gaps(samples)
    assert (gap.start_t, gap.end_t, gap.lost_count) == (1795771637.779311, 1795771638.291439, 31)
    assert gap.duration_s == pytest.approx(0.512128)
    summary = samples[-1].values
    assert (summary["transmitted"], summary["received"]) == (188, 157)


def test_link_down() -> None:
    samples = parse("ping-netns-linkdown-c20-i0.2.txt")
    assert lost_seqs(samples) == [7, 8, 9, 10, 11]
    [gap] = unreachable_gaps(samples)
    assert gap == Gap(1795771659.523325, 1795771660.747373, 5, 7, 11)


def test_duplicates_are_not_second_replies() -> None:
    # ping -v -b to a broadcast address answered by two namespaces: real DUP!s.
    samples = parse("ping-netns-broadcast-dup-c5.txt")
    replies = of_kind(samples, "reply")
    dups = of_kind(samples, "dup")
    assert seqs(replies) == [1, 2, 3, 4, 5]
    assert replies[0].values == {"seq": 1, "rtt_ms": 0.042, "ttl": 64}  # "ident=7413" skipped
    assert seqs(dups) == [1, 2, 3, 4]
    assert dups[0].values == {"seq": 1, "dup": 1.0}
    assert dups[0].t == 1795771654.144356
    assert not any("late" in s.values for s in replies)
    assert samples[-1].values["duplicates"] == 4


def test_ipv6_loopback() -> None:
    parser = PingParser("storage")
    lines = (CAPTURES / "ping-ipv6-loopback-c3.txt").read_text().splitlines()
    samples = parse_lines(parser, lines)
    assert parser.target == "::1"
    assert [s.values["rtt_ms"] for s in samples if sample_kind(s) == "reply"] == [
        0.037,
        0.037,
        0.032,
    ]


# -- formats not captured here, from iputils' source (ping_common.c) --------------


def feed_all(parser: PingParser, text: str) -> list[Sample]:
    out: list[Sample] = []
    for line in text.splitlines():
        out += parser.feed(line)
    return out


def test_dup_format_from_source_and_corrupt_replies() -> None:
    parser = PingParser("h")
    samples = feed_all(
        parser,
        "[100.000000] 64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.05 ms\n"
        "[100.000100] 64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.06 ms (DUP!)\n"
        "[100.200000] 64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.05 ms (BAD CHECKSUM!)\n"
        "[100.400000] 64 bytes from 10.0.0.2: icmp_seq=3 ttl=64 (truncated)\n",
    )
    assert [sample_kind(s) for s in samples] == ["reply", "dup", "loss", "reply"]
    assert samples[2].values["seq"] == 2  # a corrupt reply is no reply
    assert samples[3].values == {"seq": 3, "rtt_ms": None, "ttl": 64}


def test_without_d_and_o_uses_clock_and_infers_losses() -> None:
    ticks = iter([10.0, 11.0, 12.0, 13.0])
    parser = PingParser("h", clock=lambda: next(ticks))
    samples = feed_all(
        parser,
        "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n"
        "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.05 ms\n"
        "64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.05 ms\n"
        "64 bytes from 10.0.0.2: icmp_seq=5 ttl=64 time=0.05 ms\n",
    )
    assert [(s.t, sample_kind(s), s.values["seq"]) for s in samples] == [
        (10.0, "reply", 1),
        (11.0, "reply", 2),
        (12.0, "loss", 3),
        (12.0, "loss", 4),
        (12.0, "reply", 5),
    ]
    assert unreachable_gaps(samples) == [Gap(11.0, 12.0, 2, 3, 4)]


def test_sequence_wraps_after_65535() -> None:
    parser = PingParser("h")
    samples = feed_all(
        parser,
        "[1.0] 64 bytes from h: icmp_seq=65534 ttl=64 time=0.1 ms\n"
        "[1.1] 64 bytes from h: icmp_seq=65535 ttl=64 time=0.1 ms\n"
        "[1.3] no answer yet for icmp_seq=0\n"
        "[1.3] 64 bytes from h: icmp_seq=1 ttl=64 time=0.1 ms\n"
        "[1.4] 64 bytes from h: icmp_seq=0 ttl=64 time=150 ms\n",
    )
    assert [(sample_kind(s), s.values["seq"]) for s in samples] == [
        ("reply", 65534),
        ("reply", 65535),
        ("loss", 65536),
        ("reply", 65537),
        ("reply", 65536),
    ]
    assert samples[-1].values["late"] == 1.0
    assert lost_seqs(samples) == []
    assert unreachable_gaps(samples) == []


def test_long_run_keeps_small_state() -> None:
    # Probes 64 000 .. 68 000 of a 10 ms run (11 min in): icmp_seq wraps at
    # 65 536; the parser keeps a few numbers, not a history.
    parser = PingParser("h")
    for n in range(64_000, 68_001):
        line = f"[{n / 100:.6f}] 64 bytes from h: icmp_seq={n % 65536} ttl=64 time=0.1 ms"
        [sample] = parser.feed(line)
        assert sample.values["seq"] == n
    assert all(not isinstance(v, list | dict | set) for v in vars(parser).values())


def test_joining_mid_stream_infers_nothing_before() -> None:
    parser = PingParser("h")
    samples = feed_all(parser, "[5.0] 64 bytes from h: icmp_seq=500 ttl=64 time=0.1 ms\n")
    assert [sample_kind(s) for s in samples] == ["reply"]


def test_summary_at_finish_when_its_last_line_is_missing() -> None:
    parser = PingParser("h", clock=lambda: 99.0)
    samples = feed_all(
        parser,
        "[1.0] 64 bytes from h: icmp_seq=1 ttl=64 time=0.1 ms\n"
        "[1.2] no answer yet for icmp_seq=2\n"
        "\n"
        "--- h ping statistics ---\n"
        "4 packets transmitted, 1 received, 75% packet loss, time 600ms\n",
    )
    assert [sample_kind(s) for s in samples] == ["reply", "loss"]
    end = parser.finish()
    # seqs 3 and 4 never got an -O line: the totals tell, stamped at the last time seen.
    assert [(sample_kind(s), s.values.get("seq"), s.t) for s in end] == [
        ("loss", 3, 1.2),
        ("loss", 4, 1.2),
        ("summary", None, 1.2),
    ]
    assert end[-1].values["rtt_min_ms"] is None
    assert parser.finish() == []


def test_crlf_and_noise_lines_are_harmless() -> None:
    parser = PingParser("h")
    samples = feed_all(
        parser,
        "WARNING: pinging broadcast address\r\n"
        "ping: sendmsg: Network is unreachable\r\n"
        "[1.0] 64 bytes from h: icmp_seq=1 ttl=64 time=0.1 ms\r\n",
    )
    assert [s.values for s in samples] == [{"seq": 1, "rtt_ms": 0.1, "ttl": 64}]


def test_registry_entry() -> None:
    parser = PROBES["ping"].new_parser("storage", lambda: 0.0)
    [sample] = parser.feed("[1.5] 64 bytes from h: icmp_seq=1 ttl=64 time=0.1 ms")
    assert (sample.probe, sample.host, sample.t) == ("ping", "storage", 1.5)


# -- the real tool -----------------------------------------------------------------


async def run_parsed(argv: list[str], parser: PingParser) -> tuple[int, list[Sample]]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert process.stdout is not None
    samples: list[Sample] = []
    async for raw in process.stdout:
        samples += parser.feed(raw.decode())
    samples += parser.finish()
    return await process.wait(), samples


async def test_real_ping_loopback() -> None:
    paths = need("ping")
    argv = ping_command("127.0.0.1", count=3, interval_s=0.2, program=paths["ping"])
    before = time.time()
    status, samples = await asyncio.wait_for(run_parsed(argv, PingParser("local")), 10)
    assert status == 0
    replies = of_kind(samples, "reply")
    assert seqs(replies) == [1, 2, 3]
    assert all(before - 1 < s.t < time.time() + 1 for s in replies)  # ping -D wall clock
    assert all((s.values["rtt_ms"] or 0) > 0 for s in replies)
    assert samples[-1].values["transmitted"] == 3
    assert samples[-1].values["received"] == 3


async def test_real_ping_fast_interval() -> None:
    # 10 ms: root may go below 200 ms (and anyone to 2 ms on iputils >= 20210722).
    paths = need("ping")
    argv = ping_command("127.0.0.1", count=20, interval_s=0.01, program=paths["ping"])
    status, samples = await asyncio.wait_for(run_parsed(argv, PingParser("local")), 10)
    assert status == 0
    assert seqs(of_kind(samples, "reply")) == list(range(1, 21))
    assert lost_seqs(samples) == []
