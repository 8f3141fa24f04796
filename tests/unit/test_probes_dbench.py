"""dbench 4.0: the builder, the parser on real captures, a real run."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from backend.events import Sample
from backend.probes import PROBES, is_summary, parse_lines
from backend.probes.dbench import CLEANUP, EXECUTE, WARMUP, DbenchParser, dbench_command
from tests.conftest import DATA, need

CAPTURES = DATA / "probes"


def parse(name: str) -> list[Sample]:
    ticks = itertools.count(1000.0, 0.25)
    parser = DbenchParser("guest", clock=lambda: next(ticks))
    return parse_lines(parser, (CAPTURES / name).read_text().splitlines(keepends=True))


def phase(samples: list[Sample], which: float) -> list[Sample]:
    return [s for s in samples if s.values.get("phase") == which]


# -- builder -----------------------------------------------------------------------


def test_command() -> None:
    assert dbench_command(2, time_s=400) == ["dbench", "-t", "400", "2"]
    assert dbench_command(
        2, time_s=10, directory="/srv/dbench", loadfile="/usr/share/dbench/client.txt"
    ) == ["dbench", "-t", "10", "-c", "/usr/share/dbench/client.txt", "-D", "/srv/dbench", "2"]


@pytest.mark.parametrize(
    ("clients", "kwargs"),
    [(0, {"time_s": 10}), (2, {"time_s": 0}), (2, {"time_s": 10, "directory": ""})],
)
def test_command_refuses(clients: int, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dbench_command(clients, **kwargs)  # type: ignore[arg-type]


# -- captures ----------------------------------------------------------------------


def test_ten_seconds_two_clients() -> None:
    samples = parse("dbench-t10-c2.txt")
    warmup, execute, cleanup = (phase(samples, p) for p in (WARMUP, EXECUTE, CLEANUP))
    assert len(warmup) == 1 and len(execute) == 9 and len(cleanup) == 2
    assert warmup[0].values == {
        "phase": WARMUP,
        "elapsed_s": 1,
        "clients": 2,
        "lines": 57298,
        "mb_per_s": 650.41,
        "mb_per_s_1s": 650.41,
        "latency_ms": 4.706,
    }
    assert warmup[0].unit == {
        "elapsed_s": "s",
        "mb_per_s": "MB/s",
        "mb_per_s_1s": "MB/s",
        "latency_ms": "ms",
    }
    assert [s.values["elapsed_s"] for s in execute] == list(range(1, 10))
    assert execute[0].values["mb_per_s"] == 611.47
    assert execute[0].values["latency_ms"] == 10.473
    # The printed MB/sec is the average since execute began; the 1 s rate of
    # second 2 is 626.84 * 2 - 611.47 * 1.
    assert execute[1].values["mb_per_s_1s"] == 642.21
    assert execute[-1].values["mb_per_s"] == 612.31
    assert [s.values["clients"] for s in cleanup] == [2, 0]
    assert cleanup[0].values == {"phase": CLEANUP, "elapsed_s": 10, "clients": 2}
    # Warmup second 1 at the first clock reading; execute starts on the tick
    # after warmup second 1 ends (warmup is 2 s), so execute second 1 is 2 s later.
    assert warmup[0].t == 1000.0
    assert [s.t for s in execute[:2]] == [1002.0, 1003.0]
    assert cleanup[0].t == 1011.0
    summary = samples[-1]
    assert is_summary(summary)
    assert summary.values == {
        "summary": 1.0,
        "throughput_mb_per_s": 612.315,
        "clients": 2,
        "procs": 2,
        "max_latency_ms": 10.473,
        "operations": 1132848,  # the Operation table's counts summed
    }
    assert summary.t >= cleanup[-1].t


def test_twenty_seconds_with_loadfile() -> None:
    samples = parse("dbench-t20-c2-loadfile.txt")
    warmup, execute = phase(samples, WARMUP), phase(samples, EXECUTE)
    assert [s.values["mb_per_s"] for s in warmup] == [562.25, 559.41, 554.09]
    assert len(execute) == 19
    assert [s.t for s in warmup] == [1000.0, 1001.0, 1002.0]
    assert execute[0].t == 1004.0  # warmup 4 s: the tick at 4 s switches silently
    assert execute[0].values["lines"] == 254763  # lines keep counting across phases
    assert execute[0].values["mb_per_s_1s"] == 568.46  # the byte count restarted
    assert max(s.values["latency_ms"] or 0 for s in execute) == 24.475
    assert samples[-1].values["throughput_mb_per_s"] == 535.433
    assert samples[-1].values["max_latency_ms"] == 24.475


def test_five_seconds_has_no_warmup_line() -> None:
    samples = parse("dbench-t5-c2.txt")
    assert phase(samples, WARMUP) == []
    execute = phase(samples, EXECUTE)
    assert [s.values["mb_per_s"] for s in execute] == [433.15, 456.61, 494.86, 495.20]
    assert execute[0].t == 1000.0
    assert samples[-1].values["throughput_mb_per_s"] == 495.199
    assert samples[-1].values["operations"] == 453238


def test_missing_directory_gives_no_samples() -> None:
    assert parse("dbench-missing-dir.txt") == []


def test_older_formats() -> None:
    parser = DbenchParser("guest", clock=lambda: 10.0)
    [a] = parser.feed("   2     10436   349.63 MB/sec  execute   1 sec   ")
    [b] = parser.feed("   4     21792   539.21 MB/sec  execute   2 sec  latency 9.98 msec ")
    assert "latency_ms" not in a.values
    assert b.values["latency_ms"] == 9.98
    [c] = parser.feed("Throughput 1.2e+03 MB/sec  4 clients  4 procs  max_latency=35.936 ms")
    assert c.values["throughput_mb_per_s"] == 1200.0
    assert "operations" not in c.values


def test_registry_entry() -> None:
    parser = PROBES["dbench"].new_parser("guest", lambda: 5.0)
    [sample] = parser.feed("   2    161271   905.96 MB/sec  execute   1 sec  latency 4.785 ms")
    assert (sample.probe, sample.t) == ("dbench", 5.0)


# -- the real tool -----------------------------------------------------------------


async def test_real_dbench(tmp_path: Path) -> None:
    paths = need("dbench")
    # -t 3: warmup is 3 // 5 = 0 s, so execute lines from the first second.
    argv = dbench_command(2, time_s=3, directory=str(tmp_path), program=paths["dbench"])
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert process.stdout is not None
    parser = DbenchParser("local")
    samples: list[Sample] = []

    async def read() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            samples.extend(parser.feed(raw.decode()))

    await asyncio.wait_for(read(), 20)
    samples += parser.finish()
    assert await process.wait() == 0
    execute = phase(samples, EXECUTE)
    assert execute and execute[0].values["elapsed_s"] == 1
    assert (execute[0].values["mb_per_s"] or 0) > 0
    summary = samples[-1]
    assert is_summary(summary)
    assert (summary.values["throughput_mb_per_s"] or 0) > 0
    assert summary.values["clients"] == 2
