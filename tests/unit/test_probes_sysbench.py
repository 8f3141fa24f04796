"""sysbench cpu and memory: builders, the parser on real captures, a real run."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from backend.events import Sample
from backend.probes import PROBES, is_summary, parse_lines
from backend.probes.sysbench import (
    SysbenchParser,
    sysbench_cpu_command,
    sysbench_memory_command,
)
from tests.conftest import DATA, need

CAPTURES = DATA / "probes"


def stepping_clock(start: float = 1000.0) -> itertools.count[float]:
    return itertools.count(start, 0.5)


def parse(name: str, probe: str = "sysbench-cpu") -> tuple[SysbenchParser, list[Sample]]:
    ticks = stepping_clock()
    parser = SysbenchParser("guest", probe=probe, clock=lambda: next(ticks))
    lines = (CAPTURES / name).read_text().splitlines(keepends=True)
    return parser, parse_lines(parser, lines)


# -- builders ----------------------------------------------------------------------


def test_cpu_command() -> None:
    assert sysbench_cpu_command(threads=20, time_s=60) == [
        "sysbench", "cpu", "--cpu-max-prime=1000", "--threads=20", "--time=60",
        "--report-interval=1", "run",
    ]  # fmt: skip
    assert sysbench_cpu_command(report_interval_s=None, program="/usr/bin/sysbench") == [
        "/usr/bin/sysbench", "cpu", "--cpu-max-prime=1000", "--threads=1", "--time=10", "run",
    ]  # fmt: skip


def test_memory_command() -> None:
    assert sysbench_memory_command(threads=2, time_s=30, block_size="1M") == [
        "sysbench", "memory", "--memory-oper=write", "--memory-access-mode=seq",
        "--memory-block-size=1M", "--memory-total-size=100T", "--threads=2", "--time=30",
        "--report-interval=1", "run",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "call",
    [
        lambda: sysbench_cpu_command(threads=0),
        lambda: sysbench_cpu_command(time_s=-1),
        lambda: sysbench_cpu_command(max_prime=0),
        lambda: sysbench_cpu_command(report_interval_s=0),
        lambda: sysbench_memory_command(block_size="1K; reboot"),
        lambda: sysbench_memory_command(total_size=""),
        lambda: sysbench_memory_command(oper="erase"),  # type: ignore[arg-type]
    ],
)
def test_commands_refuse(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


# -- captures ----------------------------------------------------------------------


def test_cpu_with_interim_reports() -> None:
    parser, samples = parse("sysbench-cpu-t2-time5-report1.txt")
    assert (parser.test, parser.threads) == ("cpu", 2)
    intervals = [s for s in samples if not is_summary(s)]
    # --time=5 printed 4 interim lines: sysbench often skips the last second.
    assert [s.values["elapsed_s"] for s in intervals] == [1, 2, 3, 4]
    assert intervals[0].values == {
        "elapsed_s": 1,
        "threads": 2,
        "eps": 60078.64,
        "lat_ms": 0.04,
        "lat_pct": 95,
    }
    assert intervals[0].unit == {
        "elapsed_s": "s",
        "eps": "events/s",
        "lat_ms": "ms",
        "lat_pct": "%",
    }
    assert intervals[-1].values["eps"] == 60115.14
    # Anchored at "Threads started!" (the clock's first reading, 1000.0), 1 s apart.
    assert [s.t for s in intervals] == [1001.0, 1002.0, 1003.0, 1004.0]
    summary = samples[-1]
    assert summary.probe == "sysbench-cpu"
    assert summary.t == pytest.approx(1005.0003)
    assert summary.values == {
        "summary": 1.0,
        "threads": 2,
        "events_per_s": 59205.04,
        "total_time_s": 5.0003,
        "total_events": 296137,
        "lat_min_ms": 0.03,
        "lat_avg_ms": 0.03,
        "lat_max_ms": 19.20,
        "lat_pct": 95,
        "lat_pct_ms": 0.04,
        "lat_sum_ms": 9940.80,
        "thread_events_avg": 148068.5,
        "thread_events_stddev": 3882.50,
        "thread_time_avg_s": 4.9704,
        "thread_time_stddev_s": 0.0,
    }


def test_cpu_without_interim_reports() -> None:
    parser, samples = parse("sysbench-cpu-t2-time3-noreport.txt")
    assert parser.test == "cpu"
    [summary] = samples
    assert is_summary(summary)
    assert summary.values["events_per_s"] == 60289.89
    assert summary.values["total_events"] == 180986
    assert summary.values["lat_max_ms"] == 1.17


def test_cpu_twenty_threads_as_in_the_study() -> None:
    _, samples = parse("sysbench-cpu-t20-time3-report1.txt")
    intervals = [s for s in samples if not is_summary(s)]
    # The last interim line saw threads already finishing.
    assert [s.values["threads"] for s in intervals] == [20, 20, 16]
    assert samples[-1].values["events_per_s"] == 61814.06
    assert samples[-1].values["threads"] == 20


def test_memory_with_interim_reports() -> None:
    parser, samples = parse("sysbench-memory-write-seq-t2-time5-report1.txt", "sysbench-memory")
    assert parser.test == "memory"
    intervals = [s for s in samples if not is_summary(s)]
    assert [s.values["mib_per_s"] for s in intervals] == [7342.05, 7204.64, 7138.81, 7283.56]
    assert intervals[0].values == {"elapsed_s": 1, "mib_per_s": 7342.05}
    assert intervals[0].unit == {"elapsed_s": "s", "mib_per_s": "MiB/s"}
    summary = samples[-1]
    assert summary.probe == "sysbench-memory"
    assert summary.values["total_ops"] == 36893890
    assert summary.values["ops_per_s"] == 7376159.54
    assert summary.values["transferred_mib"] == 36029.19
    assert summary.values["transferred_mib_per_s"] == 7203.28
    assert summary.values["total_time_s"] == 5.0002
    assert summary.values["lat_max_ms"] == 7.24


def test_memory_without_interim_reports() -> None:
    _, samples = parse("sysbench-memory-write-seq-t2-time3-noreport.txt", "sysbench-memory")
    [summary] = samples
    assert summary.values["transferred_mib_per_s"] == 6797.58
    assert summary.values["total_time_s"] == 3.0001


def test_memory_ends_early_at_total_size() -> None:
    # --time=10, but the default 100G was written in under 4 s.
    _, samples = parse("sysbench-memory-write-seq-1M-100G-ends-early.txt", "sysbench-memory")
    assert len(samples) == 4
    assert samples[-1].values["transferred_mib"] == 102400.00
    assert samples[-1].values["total_time_s"] == 3.9623


def test_cut_short_keeps_what_it_has() -> None:
    lines = (CAPTURES / "sysbench-cpu-t2-time5-report1.txt").read_text().splitlines()
    cut = lines[: lines.index("General statistics:") + 3]
    parser = SysbenchParser("guest", clock=lambda: 50.0)
    samples = parse_lines(parser, cut)
    assert len(samples) == 5
    assert samples[-1].values == {
        "summary": 1.0,
        "threads": 2,
        "events_per_s": 59205.04,
        "total_time_s": 5.0003,
        "total_events": 296137,
    }


def test_anchor_without_threads_started_line() -> None:
    parser = SysbenchParser("guest", clock=lambda: 100.0)
    [a] = parser.feed("[ 7s ] 10113.69 MiB/sec")
    [b] = parser.feed("[ 8s ] 10723.60 MiB/sec")
    assert (a.t, b.t) == (100.0, 101.0)


def test_sysbench_05_formats() -> None:
    parser = SysbenchParser("guest", clock=lambda: 0.0)
    [sample] = parser.feed("[   2s] 2558.44 MB/sec,")
    assert sample.values == {"elapsed_s": 2, "mib_per_s": 2558.44}


def test_registry_entries() -> None:
    for kind in ("sysbench-cpu", "sysbench-memory"):
        parser = PROBES[kind].new_parser("guest", lambda: 0.0)
        [sample] = parser.feed("[ 1s ] thds: 2 eps: 1.00 lat (ms,95%): 0.01")
        assert sample.probe == kind


# -- the real tool -----------------------------------------------------------------


async def run_parsed(argv: list[str], parser: SysbenchParser) -> tuple[int, list[Sample]]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert process.stdout is not None
    samples: list[Sample] = []
    async for raw in process.stdout:
        samples += parser.feed(raw.decode())
    samples += parser.finish()
    return await process.wait(), samples


async def test_real_sysbench_cpu() -> None:
    paths = need("sysbench")
    argv = sysbench_cpu_command(threads=2, time_s=2, program=paths["sysbench"])
    status, samples = await asyncio.wait_for(run_parsed(argv, SysbenchParser("local")), 15)
    assert status == 0
    intervals = [s for s in samples if not is_summary(s)]
    assert 1 <= len(intervals) <= 2
    assert intervals[0].values["elapsed_s"] == 1
    assert (intervals[0].values["eps"] or 0) > 0
    summary = samples[-1]
    assert is_summary(summary)
    assert summary.values["total_time_s"] == pytest.approx(2.0, abs=0.5)
    assert (summary.values["events_per_s"] or 0) > 0


async def test_real_sysbench_memory() -> None:
    paths = need("sysbench")
    argv = sysbench_memory_command(threads=1, time_s=1, program=paths["sysbench"])
    parser = SysbenchParser("local", probe="sysbench-memory")
    status, samples = await asyncio.wait_for(run_parsed(argv, parser), 15)
    assert status == 0
    assert parser.test == "memory"
    assert (samples[-1].values["transferred_mib_per_s"] or 0) > 0


def test_a_guest_that_lost_time_is_stamped_by_arrival_again() -> None:
    # The guest was suspended for 9 s at 5 s (a migration): its sysbench went on
    # counting from where its clock stood, 9 s behind the storage node's.
    now = [100.0]
    parser = SysbenchParser("guest", clock=lambda: now[0])
    times = []
    for second in range(1, 11):
        now[0] = 100.0 + second + (9.0 if second > 5 else 0.0)
        [sample] = parser.feed(f"[ {second}s ] thds: 1 eps: 500.00 lat (ms,95%): 2.00")
        times.append(sample.t)
    assert times[:5] == [101.0, 102.0, 103.0, 104.0, 105.0]
    assert times[5:7] == [106.0, 107.0]  # late twice: could still be a burst
    assert times[7:] == [117.0, 118.0, 119.0]  # three times: the clock stood still


def test_a_burst_of_late_lines_keeps_sysbench_spacing() -> None:
    now = [100.0]
    parser = SysbenchParser("guest", clock=lambda: now[0])
    times = []
    for second in range(1, 9):
        # seconds 3-6 sat in a buffer and came together with second 6
        now[0] = 100.0 + (6 if 3 <= second <= 6 else second)
        [sample] = parser.feed(f"[ {second}s ] thds: 1 eps: 500.00 lat (ms,95%): 2.00")
        times.append(sample.t)
    assert times == [100.0 + s for s in range(1, 9)]
