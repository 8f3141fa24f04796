"""Crafted input files through the real CLI: exit 2 with one message naming the file,
never a traceback, never a hang (pytest-timeout ends a test that blocks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend import inputs
from backend.inputs import InputError, open_input, read_input

ROOT = Path(__file__).resolve().parents[2]
HEADER = {"kind": "session.header", "t": 1000.0, "schema": 1}
LAB = (ROOT / "tests/data/labs").glob("*.toml")

pytestmark = pytest.mark.timeout(60)


def miglab(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *argv],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=50,
        stdin=subprocess.DEVNULL,
    )


def refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    message = result.stderr.strip()
    assert message.startswith("miglab: "), message
    for needle in needles:
        assert needle in message, message


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def _deep_toml(path: Path) -> Path:
    path.write_text("[lab]\nname = 'x'\n\nvalue = " + "[" * 600 + "]" * 600 + "\n")
    return path


def _bigint_toml(path: Path) -> Path:
    path.write_text("[lab]\nname = 'x'\ncount = " + "7" * 5000 + "\n")
    return path


# --------------------------------------------------------------------------- lab and scenario


@pytest.mark.parametrize("command", [("check", "--lab"), ("scenarios",)])
def test_lab_and_scenario_files_that_are_not_regular_files_are_refused(
    command: tuple[str, ...], fifo: Path, tmp_path: Path
) -> None:
    refused(miglab(*command, "/dev/zero"), "/dev/zero", "character device")
    refused(miglab(*command, str(fifo)), str(fifo), "FIFO")
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"# " + b"x" * (inputs.LAB_MAX_BYTES + 10) + b"\n")
    refused(miglab(*command, str(huge)), str(huge), "1 MiB at most")


@pytest.mark.parametrize("command", [("check", "--lab"), ("scenarios",)])
def test_toml_nested_too_deep_names_file_and_line(command: tuple[str, ...], tmp_path: Path) -> None:
    path = _deep_toml(tmp_path / "deep.toml")
    refused(miglab(*command, str(path)), f"{path}:4:", "nested too deep")


@pytest.mark.parametrize("command", [("check", "--lab"), ("scenarios",)])
def test_toml_integer_over_4300_digits_names_file_and_line(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    path = _bigint_toml(tmp_path / "big.toml")
    refused(miglab(*command, str(path)), f"{path}:3:", "5000 digits")


# --------------------------------------------------------------------------- session logs


@pytest.mark.parametrize("command", ["report", "replay"])
def test_logs_that_are_not_regular_files_are_refused(command: str, fifo: Path) -> None:
    refused(miglab(command, "/dev/zero"), "/dev/zero", "character device")
    refused(miglab(command, str(fifo)), str(fifo), "FIFO")


def test_a_header_nested_too_deep_or_with_a_huge_number_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"kind": "session.header", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    refused(miglab("report", str(deep)), f"{deep}:1:", "nested too deep")
    big = tmp_path / "big.jsonl"
    big.write_text('{"kind": "session.header", "t": ' + "1" * 5000 + "}\n")
    refused(miglab("report", str(big)), f"{big}:1:", "number too long")


def _ping(t: float | str, seq: int) -> str:
    t_text = t if isinstance(t, str) else repr(t)
    values = f'{{"seq": {seq}, "rtt_ms": 1.5}}'
    return f'{{"kind": "sample", "t": {t_text}, "probe": "ping", "host": "h", "values": {values}}}'


def _finished(t: str) -> str:
    return (
        f'{{"kind": "migration.finished", "t": {t}, "domain": "g", "source": "a", '
        '"dest": "b", "ok": true, "total_time_ms": 1000}'
    )


@pytest.mark.parametrize(
    "crafted",
    [
        _ping("NaN", 2),
        _ping("1e308", 2),
        _ping("-Infinity", 2),
        _finished("NaN"),
        _finished("1e308"),
        '{"kind": "note", "t": 1001, "text": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"kind": "note", "t": 1001, "text": "x", "n": ' + "9" * 5000 + "}",
    ],
    ids=["nan", "1e308", "-inf", "finished-nan", "finished-1e308", "deep", "bigint"],
)
@pytest.mark.parametrize("fmt", ["text", "json", "csv", "md"])
def test_crafted_events_are_skipped_and_counted_not_a_traceback(
    crafted: str, fmt: str, tmp_path: Path
) -> None:
    log = tmp_path / "crafted.jsonl"
    lines = [json.dumps(HEADER), _ping(1001.0, 1), crafted, _ping(1002.0, 3)]
    log.write_text("\n".join(lines) + "\n")
    result = miglab("report", "--format", fmt, str(log))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    if fmt == "json":
        document = json.loads(result.stdout)
        assert document["skipped_lines"]["count"] == 1, document["skipped_lines"]
    elif fmt == "csv":
        times = [row.split(",")[0] for row in result.stdout.splitlines()[1:]]
        assert times == ["1.000000", "1.000000", "2.000000", "2.000000"]
    else:
        assert "1 line skipped" in result.stdout and "line 3" in result.stdout, result.stdout


async def test_replay_leaves_out_events_whose_time_is_not_a_time(tmp_path: Path) -> None:
    from backend.events import Event
    from tui.replay import ReplayBackend

    log = tmp_path / "crafted.jsonl"
    lines = [json.dumps(HEADER), _ping(1001.0, 1), _ping("NaN", 2), _ping("1e308", 3)]
    log.write_text("\n".join([*lines, _ping(1002.0, 4)]) + "\n")
    backend = ReplayBackend.open(log, speed=0)
    seen: list[Event] = []
    backend.subscribe(seen.append)
    await backend.start()
    await backend.wait_finished()
    await backend.close()
    assert [e.t for e in seen] == [1001.0, 1002.0]
    assert backend.duration == pytest.approx(2.0)


# --------------------------------------------------------------------------- imports


def test_import_inputs_that_are_not_regular_files_are_refused(fifo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    refused(miglab("import", "ping", "/dev/zero", "-o", str(out)), "/dev/zero", "character device")
    refused(miglab("import", "qemu", str(fifo), "-o", str(out)), str(fifo), "FIFO")
    assert not out.exists()


def test_import_of_json_nested_too_deep_or_with_huge_numbers_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    deep = tmp_path / "deep.json"
    deep.write_text('{"return": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    refused(miglab("import", "qemu", str(deep), "-o", str(out)), str(deep), "line 1", "too deep")
    big = tmp_path / "big.json"
    big.write_text('{"status": "active", "total-time": ' + "1" * 5000 + "}\n")
    refused(miglab("import", "qemu", str(big), "-o", str(out)), str(big), "line 1", "too long")
    ping = tmp_path / "ping.txt"
    ping.write_text(f"64 bytes from 10.0.0.2: icmp_seq={'1' * 5000} ttl=64 time=0.1 ms\n")
    refused(miglab("import", "ping", str(ping), "-o", str(out)), str(ping))
    assert not out.exists()


# --------------------------------------------------------------------------- the module


def test_a_fifo_swapped_in_after_the_stat_does_not_block_the_open(
    fifo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    regular = os.stat(tmp_path / "pipe").__class__  # os.stat_result
    real = os.stat(ROOT / "pyproject.toml")
    monkeypatch.setattr(inputs.os, "stat", lambda _path: regular(real))
    with pytest.raises(InputError, match="FIFO"):
        open_input(fifo, "lab.toml file", inputs.LAB_MAX_BYTES)


def test_read_input_reads_a_regular_file_and_refuses_one_over_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "small.toml"
    path.write_bytes(b"a = 1\n")
    assert read_input(path, "lab.toml file", 6) == b"a = 1\n"
    with pytest.raises(InputError, match=r"is 6 bytes, larger than a lab.toml file may be"):
        read_input(path, "lab.toml file", 5)


def test_iter_lines_skips_an_over_long_line_without_keeping_it(tmp_path: Path) -> None:
    path = tmp_path / "lines"
    path.write_bytes(b"one\n" + b"x" * 100 + b"\nthree\nfour")
    with path.open("rb") as file:
        assert list(inputs.iter_lines(file, max_line=10)) == [
            (1, b"one\n"),
            (2, None),
            (3, b"three\n"),
            (4, b"four"),
        ]
