"""The RAM dirtier: the script under dash and busybox sh, the parser on its captures."""

from __future__ import annotations

import asyncio
import itertools
import signal
from pathlib import Path

import pytest

from backend.events import Sample
from backend.probes import PROBES, is_summary, parse_lines
from backend.probes.dirtier import DIRTIER_SCRIPT, DirtierParser, dirtier_command
from tests.conftest import DATA, need

CAPTURES = DATA / "probes"


def parse(name: str) -> list[Sample]:
    parser = DirtierParser("guest", clock=lambda: 5000.0)
    return parse_lines(parser, (CAPTURES / name).read_text().splitlines(keepends=True))


# -- builder -----------------------------------------------------------------------


def test_command_passes_parameters_positionally() -> None:
    assert dirtier_command(512) == [
        "sh", "-c", DIRTIER_SCRIPT, "miglab-dirtier", "512", "0", "/dev/shm/miglab-dirty",
    ]  # fmt: skip
    argv = dirtier_command(64, rounds=3, path="/run/x y", shell=("busybox", "sh"))
    assert argv[:3] == ["busybox", "sh", "-c"]
    assert argv[4:] == ["miglab-dirtier", "64", "3", "/run/x y"]
    assert "/run/x y" not in DIRTIER_SCRIPT and "512" not in DIRTIER_SCRIPT


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size_mib": 0},
        {"size_mib": True},
        {"size_mib": 8, "rounds": -1},
        {"size_mib": 8, "path": "relative"},
        {"size_mib": 8, "path": "/dev/shm/"},
        {"size_mib": 8, "shell": ()},
    ],
)
def test_command_refuses(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dirtier_command(**kwargs)  # type: ignore[arg-type]


# -- captures ----------------------------------------------------------------------


def test_dash_capture() -> None:
    samples = parse("dirtier-dash-256mib-8rounds.txt")
    rounds = [s for s in samples if not is_summary(s)]
    assert [s.values["round"] for s in rounds] == list(range(1, 9))
    # The fill (random data, before round 1) is set-up: no sample of its own.
    assert rounds[0].values == {
        "round": 1,
        "mib": 256,
        "elapsed_s": 0.10,
        "mib_per_s": pytest.approx(2560.0),
    }
    assert rounds[0].unit == {"mib": "MiB", "elapsed_s": "s", "mib_per_s": "MiB/s"}
    assert rounds[3].values["mib_per_s"] == pytest.approx(256 / 0.10)
    # Timed by the guest's uptime, anchored on the clock at the first round.
    assert rounds[0].t == 5000.0
    assert rounds[-1].t == pytest.approx(5000.0 + 5000.26 - 4999.56)
    summary = samples[-1]
    assert summary.values == {
        "summary": 1.0,
        "rounds": 8,
        "total_mib": 2048,
        "total_elapsed_s": 0.80,
        "avg_mib_per_s": pytest.approx(2048 / 0.80),
        "failed": 0.0,
    }
    assert summary.t == rounds[-1].t


def test_busybox_capture() -> None:
    samples = parse("dirtier-busybox-256mib-8rounds.txt")
    assert len(samples) == 9
    assert [s.values["elapsed_s"] for s in samples[:8]] == [0.10] * 8
    assert samples[-1].values["total_elapsed_s"] == 0.80


def test_stopped_by_sigterm_capture() -> None:
    # No "done" line: the end-of-stream summary comes from finish().
    samples = parse("dirtier-dash-512mib-until-sigterm.txt")
    assert [s.values["elapsed_s"] for s in samples[:-1]] == [0.20, 0.19, 0.19, 0.19]
    assert samples[-1].values["rounds"] == 4
    assert samples[-1].values["total_mib"] == 2048


def test_dd_failure_capture() -> None:
    # dd cannot create the file: the fill fails, before any round.
    [summary] = parse("dirtier-dash-dd-fails.txt")
    assert summary.values["failed"] == 1.0
    assert summary.values["rounds"] == 0
    assert summary.values["avg_mib_per_s"] is None


def test_fill_line_makes_no_sample_and_a_failed_round_counts() -> None:
    parser = DirtierParser("guest", clock=lambda: 1.0)
    assert parser.feed("miglab-dirtier start size_mib=8 rounds=0") == []
    assert parser.feed("miglab-dirtier filled mib=8 cs=3") == []
    [first] = parser.feed("miglab-dirtier round=1 mib=8 cs=4 uptime=12.34")
    assert parser.feed("miglab-dirtier error round=2") == []
    assert parser.feed("dd: error writing '/dev/shm/x': No space left on device") == []
    [summary] = parser.finish()
    assert first.values["round"] == 1
    assert (summary.values["rounds"], summary.values["failed"]) == (1, 1.0)


def test_zero_centiseconds_has_no_rate() -> None:
    parser = DirtierParser("guest", clock=lambda: 1.0)
    [sample] = parser.feed("miglab-dirtier round=1 mib=1 cs=0 uptime=10.00")
    assert sample.values["mib_per_s"] is None


def test_registry_entry() -> None:
    parser = PROBES["dirtier"].new_parser("guest", lambda: 1.0)
    [sample] = parser.feed("miglab-dirtier round=1 mib=8 cs=4 uptime=12.34")
    assert (sample.probe, sample.values["mib_per_s"]) == ("dirtier", 200.0)


# -- real runs of the script -------------------------------------------------------


async def start(argv: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def read_all(process: asyncio.subprocess.Process, parser: DirtierParser) -> list[Sample]:
    assert process.stdout is not None
    samples: list[Sample] = []
    async for raw in process.stdout:
        samples += parser.feed(raw.decode())
    return samples + parser.finish()


@pytest.mark.parametrize("shell", [("sh",), ("busybox", "sh")])
async def test_real_rounds(shell: tuple[str, ...], tmp_path: Path) -> None:
    need(shell[0], "dd")
    target = tmp_path / "dirty"
    argv = dirtier_command(16, rounds=3, path=str(target), shell=shell)
    process = await start(argv)
    samples = await asyncio.wait_for(read_all(process, DirtierParser("local")), 10)
    assert await process.wait() == 0
    assert [s.values["round"] for s in samples[:-1]] == [1, 2, 3]
    assert all(s.values["mib"] == 16 for s in samples[:-1])
    assert samples[-1].values["rounds"] == 3
    assert samples[-1].values["failed"] == 0.0
    assert not target.exists()  # removed on exit


@pytest.mark.parametrize("shell", [("sh",), ("busybox", "sh")])
async def test_real_stop_with_sigterm_removes_the_file(
    shell: tuple[str, ...], tmp_path: Path
) -> None:
    need(shell[0], "dd")
    target = tmp_path / "dirty"
    process = await start(dirtier_command(16, path=str(target), shell=shell))
    assert process.stdout is not None
    parser = DirtierParser("local")
    samples: list[Sample] = []
    # Two rounds (however long this machine takes for them), then stop it as the runner
    # would; was: a second of rounds, which a loaded machine filled with one.
    while len([s for s in samples if not is_summary(s)]) < 2:
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line, "the dirtier ended by itself"
        samples += parser.feed(line.decode())
    assert target.exists()
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 10) == 143
    assert not target.exists()
    samples += parser.finish()
    rounds = [s for s in samples if not is_summary(s)]
    assert len(rounds) >= 2
    assert [s.values["round"] for s in rounds] == list(range(1, len(rounds) + 1))
    assert all(s.t <= t.t for s, t in itertools.pairwise(rounds))
    assert samples[-1].values["rounds"] == len(rounds)


def zero_pages(data: bytes) -> int:
    page = 4096
    return sum(1 for i in range(0, len(data), page) if not any(data[i : i + page]))


async def next_round(process: asyncio.subprocess.Process, parser: DirtierParser) -> Sample:
    assert process.stdout is not None
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line, "the dirtier ended by itself"
        if samples := parser.feed(line.decode()):
            return samples[0]


@pytest.mark.parametrize("shell", [("sh",), ("busybox", "sh")])
async def test_real_file_is_random_data_rewritten_every_round(
    shell: tuple[str, ...], tmp_path: Path
) -> None:
    """What makes it a load for QEMU: no zero page (QEMU sends those as a flag), the whole
    size (5 MiB: the fill's doubling ends with a partial step), written again each round."""
    need(shell[0], "dd")
    target = tmp_path / "dirty"
    process = await start(dirtier_command(5, path=str(target), shell=shell))
    parser = DirtierParser("local")
    try:
        await next_round(process, parser)
        data = await asyncio.to_thread(target.read_bytes)
        assert len(data) == 5 << 20
        assert zero_pages(data) == 0
        assert len(set(data[:65536])) > 200  # random bytes, not a constant fill
        before = target.stat().st_mtime_ns
        await asyncio.sleep(0.1)  # past the file system's timestamp granularity
        rounds = [(await next_round(process, parser)).values["round"] or 0 for _ in range(2)]
        assert target.stat().st_mtime_ns > before  # the rounds write, not only read
        assert rounds[1] == rounds[0] + 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 143
    assert not target.exists()


async def test_real_dd_failure() -> None:
    need("sh", "dd")
    process = await start(dirtier_command(1, rounds=1, path="/proc/miglab-dirty"))
    samples = await asyncio.wait_for(read_all(process, DirtierParser("local")), 10)
    assert await process.wait() == 1
    assert samples[-1].values["failed"] == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0", "1", "/tmp/x"], "bad size_mib"),
        (["1", "x", "/tmp/x"], "bad rounds"),
        (["1", "1", "tmp/x"], "path must be absolute"),
        (["1", "1", "/nonexistent-miglab/x"], "no directory"),
    ],
)
async def test_real_script_checks_its_arguments(args: list[str], message: str) -> None:
    need("sh")
    process = await start(["sh", "-c", DIRTIER_SCRIPT, "miglab-dirtier", *args])
    _, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 2
    assert message in err.decode()
