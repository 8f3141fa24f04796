"""A session log on a full disk, for real: a tiny tmpfs mounted for the test (root).

The disk fills in the middle of a run: the run stops at once and cleanly (its probes
stopped, the guest where it was), says so naming the file and the OS error, exits 1
without a traceback, and the log keeps every complete line written before. A log that
cannot even be started leaves no file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.events import Note
from backend.session import SessionLogWriteError, SessionLogWriter, make_header, read_session
from tests.conftest import DATA, REQUIRE_SYSTEM, need_root
from tests.support.waiting import until

MIGLAB = Path(sys.executable).with_name("miglab")
RUN_TIMEOUT_S = 300  # a bound on a hang, not a speed target: the run itself takes seconds


@contextlib.contextmanager
def tmpfs(directory: Path, size: str, *options: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` for the block; unmounted after."""
    need_root()
    directory.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options])]
    done = subprocess.run([*mount, "tmpfs", str(directory)], capture_output=True, text=True)
    if done.returncode != 0:
        message = f"cannot mount a tmpfs: {done.stderr.strip()}"
        if REQUIRE_SYSTEM:
            pytest.fail(message + " [MIGLAB_REQUIRE_SYSTEM=1]")
        pytest.skip(message)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def fill(directory: Path, leave: int = 0) -> None:
    """Fill the file system of ``directory`` up to the last byte (minus ``leave``)."""
    stat = os.statvfs(directory)
    room = stat.f_bavail * stat.f_frsize - leave
    with open(directory / "filler", "wb", buffering=0) as filler:
        if room > 0:
            filler.write(b"\0" * room)
        if leave == 0:  # and whatever the count missed
            with contextlib.suppress(OSError):
                while filler.write(b"\0" * 512):
                    pass


def lines_all_parse(path: Path) -> list[dict[str, object]]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the log must end with a complete line"
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MIGLAB), *argv], capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


def test_a_run_whose_disk_fills_stops_at_once_says_so_and_keeps_what_it_wrote(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "small", "64k") as small:
        log = small / "run.jsonl"
        done = run_cli(
            "run", "migrate-ping", "--sim", "--quick", "--speed", "200", "--repeat", "5",
            "--log", str(log),
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
        assert f"cannot write the session log {log}: No space left on device" in done.stderr
        assert "[Errno" not in done.stderr
        records = lines_all_parse(log)
        session = read_session(log)
        assert session.end is None  # the end could not be written: the log says it was cut
        assert not session.truncated_last_line and not session.bad_lines
        assert len(records) == 1 + len(session.events)
        # Stopped at once: no repetition began, and nothing finished "ok", after the
        # log broke (all five would have run otherwise, each in the log).
        logged_reps = [r["number"] for r in records if r["kind"] == "experiment.repetition"]
        printed_reps = [int(n) for n in re.findall(r"rep (\d)/5", done.stdout)]
        assert logged_reps and max(printed_reps) == max(logged_reps) < 5
        assert "finished: failed" in done.stdout and "finished: ok" not in done.stdout
        # Cleaned up as on Ctrl-C: the probes were stopped (their ends are in the output).
        assert "the run was stopped" in done.stdout


def test_a_log_that_cannot_be_started_leaves_no_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "64k") as full:
        fill(full)
        log = full / "run.jsonl"
        done = run_cli(
            "run", "migrate-ping", "--sim", "--quick", "--speed", "200", "--log", str(log)
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert f"cannot write the session log {log}: No space left on device" in done.stderr
        assert not log.exists()
        assert sorted(p.name for p in full.iterdir()) == ["filler"]


async def test_the_writer_cut_by_a_full_disk_fails_at_once_and_keeps_complete_lines(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "small", "64k") as small:
        fill(small, leave=16 * 1024)
        path = small / "s.jsonl"
        writer = await SessionLogWriter.create(path, make_header())
        heard: list[SessionLogWriteError] = []
        writer.on_failure(heard.append)
        sent = 0
        while not writer.failed.is_set():
            assert sent < 1000, "16 KiB of room must fill"
            for _ in range(10):
                writer.write(Note(text=f"note {sent:06d} " + "x" * 200))
                sent += 1
            # Let the writer take the batch (its writes run in a thread): however long
            # this machine takes, it has either written all of it or failed.
            await until(lambda n=sent: writer.failed.is_set() or writer.events_written == n)
        assert writer.error is not None and heard == [writer.error]
        assert writer.error.errno == errno.ENOSPC
        assert str(writer.error) == f"cannot write the session log {path}: No space left on device"
        writer.write(Note(text="after the failure"))  # dropped, not queued
        await writer.close("ok")
        records = lines_all_parse(path)
        notes = [r["text"] for r in records[1:]]
        assert len(notes) == writer.events_written
        assert notes == [f"note {n:06d} " + "x" * 200 for n in range(len(notes))]
        assert read_session(path).end is None


async def test_a_log_on_a_read_only_file_system_leaves_no_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "64k", "ro") as read_only:
        path = read_only / "s.jsonl"
        with pytest.raises(SessionLogWriteError) as raised:
            await SessionLogWriter.create(path, make_header())
        assert str(raised.value) == f"cannot write the session log {path}: Read-only file system"
        assert not path.exists()


async def test_a_header_that_does_not_fit_leaves_no_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "64k") as full:
        fill(full)
        path = full / "s.jsonl"
        with pytest.raises(SessionLogWriteError) as raised:
            await SessionLogWriter.create(path, make_header())
        assert "No space left on device" in str(raised.value) and str(path) in str(raised.value)
        assert not path.exists()


def test_an_import_onto_a_full_disk_says_so_and_leaves_no_file(tmp_path: Path) -> None:
    capture = DATA / "probes" / "ping-netns-blackhole-c25-i0.2.txt"
    with tmpfs(tmp_path / "full", "64k") as full:
        fill(full)
        log = full / "imported.jsonl"
        done = run_cli("import", "ping", str(capture), "-o", str(log), "--start", "1000")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert f"cannot write the session log {log}: No space left on device" in done.stderr
        assert not log.exists()
