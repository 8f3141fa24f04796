"""sysbench 0.4.12, 0.4 (2017 branch), 0.5 and 1.1 on real captures of those releases
(built from source here; tests/data/probes/README.md says how), pasted whitespace, and
lines the parser does not know."""

from __future__ import annotations

import pytest

from backend.events import Sample
from backend.importer import iter_probe
from backend.probes import is_summary
from backend.probes.sysbench import SysbenchParser
from tests.conftest import DATA

CAPTURES = DATA / "probes"


def run(lines: list[str], probe: str = "sysbench-cpu") -> tuple[SysbenchParser, list[Sample]]:
    parser = SysbenchParser("guest", probe=probe, clock=lambda: 1000.0)
    out: list[Sample] = []
    for line in lines:
        out += parser.feed(line)
    return parser, out + parser.finish()


def capture(name: str) -> list[str]:
    return (CAPTURES / name).read_text().splitlines(keepends=True)


def summary(samples: list[Sample]) -> dict[str, float | None]:
    [last] = [s for s in samples if is_summary(s)]
    return last.values


def test_sysbench_0_4_12_cpu_latencies_in_ms_with_their_unit() -> None:
    parser, samples = run(capture("sysbench-cpu-v0.4.12-prime20000-t1-2000req.txt"))
    v = summary(samples)
    assert parser.test == "cpu" and parser.threads == 1 and parser.skipped == 0
    assert v["total_time_s"] == 1.6205 and v["total_events"] == 2000
    assert (v["lat_min_ms"], v["lat_avg_ms"], v["lat_max_ms"]) == (0.58, 0.81, 20.65)
    assert (v["lat_pct"], v["lat_pct_ms"]) == (95, 1.94)
    assert v["lat_sum_ms"] == pytest.approx(1619.3)  # "total time taken by event execution"
    assert (v["thread_events_avg"], v["thread_time_avg_s"]) == (2000.0, 1.6193)


def test_sysbench_0_4_12_memory_operations_performed() -> None:
    parser, samples = run(capture("sysbench-memory-v0.4.12-write-1G-t2.txt"), "sysbench-memory")
    v = summary(samples)
    assert parser.test == "memory" and parser.skipped == 0
    assert (v["total_ops"], v["ops_per_s"]) == (1048576, 6013355.52)
    assert (v["transferred_mib"], v["transferred_mib_per_s"]) == (1024.00, 5872.42)
    assert v["total_time_s"] == 0.1744 and v["lat_max_ms"] == 10.29


def test_sysbench_0_4_branch_2017_general_statistics_wording() -> None:
    parser, samples = run(capture("sysbench-cpu-v0.4-2017-t2.txt"))
    v = summary(samples)
    assert parser.test == "cpu" and parser.skipped == 0
    assert v["total_time_s"] == 0.0427 and v["lat_max_ms"] == 0.14 and v["lat_pct_ms"] == 0.01


def test_sysbench_0_5_cpu_and_memory_intervals() -> None:
    parser, samples = run(capture("sysbench-cpu-v0.5-t2-time3.txt"))
    v = summary(samples)
    assert parser.skipped == 0 and v["total_time_s"] == 3.0122 and v["total_events"] == 125264
    assert v["lat_max_ms"] == 43.08 and v["lat_sum_ms"] == pytest.approx(5949.3)
    name = "sysbench-memory-v0.5-write-t2-time3-report1.txt"
    parser, samples = run(capture(name), "sysbench-memory")
    rates = [s.values["mib_per_s"] for s in samples if not is_summary(s)]
    assert rates == [2975.34, 3459.31, 2494.77] and parser.test == "memory"
    v = summary(samples)
    assert (v["total_ops"], v["transferred_mib"]) == (9158127, 8943.48)
    assert v["total_time_s"] == 3.0080 and parser.skipped == 0


def test_sysbench_1_1_throughput_section_keeps_total_time_and_latencies() -> None:
    parser, samples = run(capture("sysbench-cpu-v1.1.0-t2-time3-report1.txt"))
    eps = [s.values["eps"] for s in samples if not is_summary(s)]
    assert eps == [70616.01, 147443.98, 142618.50]
    v = summary(samples)
    assert v["events_per_s"] == 120169.09 and v["total_time_s"] == 3.0080
    assert v["total_events"] == 361465
    assert (v["lat_min_ms"], v["lat_avg_ms"], v["lat_max_ms"]) == (0.01, 0.02, 21.93)
    assert (v["lat_pct_ms"], v["lat_sum_ms"]) == (0.01, 5911.14)
    assert parser.skipped == 0
    name = "sysbench-memory-v1.1.0-write-seq-t2-time3-noreport.txt"
    _, samples = run(capture(name), "sysbench-memory")
    v = summary(samples)
    assert v["total_time_s"] == 3.0021 and v["lat_max_ms"] == 26.58
    assert (v["total_ops"], v["ops_per_s"]) == (15217215, 5068869.18)


def test_whitespace_mangled_by_copy_and_paste_reads_the_same() -> None:
    for name in ("sysbench-cpu-t2-time5-report1.txt", "sysbench-cpu-v0.4.12-t2.txt"):
        clean = capture(name)
        mangled = ["\t" + line.rstrip("\n").replace("  ", " \t ") + "  \r\n" for line in clean]
        _, a = run(clean)
        _, b = run(mangled)
        assert [s.values for s in a] == [s.values for s in b] and a


def test_unknown_lines_are_counted_and_an_unreadable_value_is_null() -> None:
    lines = capture("sysbench-cpu-t2-time3-noreport.txt")
    at = next(i for i, line in enumerate(lines) if "events per second" in line)
    lines[at] = "    events per second:   -nan\n"
    lines[at:at] = ["something sysbench 2.0 might say\n", "[ 1s ] a new interval\n"]
    parser, samples = run(lines)
    v = summary(samples)
    assert v["events_per_s"] is None and v["total_time_s"] == 3.0001
    assert parser.skipped == 2


@pytest.mark.parametrize(
    ("name", "probe"),
    [
        ("sysbench-cpu-v0.4.12-t2.txt", "sysbench-cpu"),
        ("sysbench-memory-v0.4.12-write-1G-t2.txt", "sysbench-memory"),
        ("sysbench-memory-v0.5-write-t2-time3-report1.txt", "sysbench-memory"),
        ("sysbench-cpu-v1.1.0-t2-time3-report1.txt", "sysbench-cpu"),
    ],
)
def test_import_tells_cpu_from_memory_in_every_version(name: str, probe: str) -> None:
    events = list(iter_probe("sysbench", capture(name), "guest", 1000.0))
    assert events and {e.probe for e in events if isinstance(e, Sample)} == {probe}


def test_histogram_rows_are_known_lines_not_unknown_ones() -> None:
    parser, samples = run(capture("sysbench-cpu-t2-time2-histogram.txt"))
    v = summary(samples)
    assert parser.skipped == 0 and v["total_time_s"] == 2.0014 and v["total_events"] == 269386
    assert v["lat_max_ms"] == 68.07 and v["events_per_s"] == 134560.65
