"""QEMU's migration status in the forms people have: QMP replies with ``-nan`` (older
QEMU), transcripts with QEMU's error lines between replies, and HMP ``info migrate``.

Captures: tests/data/qmp (README there says where each comes from).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from backend.drivers.parse_hmp import HmpInfoMigrateParser
from backend.drivers.qmp import MigrationStatus, QmpClient, loads
from backend.events import MigrationFinished, MigrationProgress, Note
from backend.importer import import_qemu
from backend.session import read_session
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
QMP_DATA = DATA / "qmp"
# QEMU 2.3's reply quoted in Launchpad bug 1585533: "cache-miss-rate": -nan
NAN_REPLY = (QMP_DATA / "lp1585533-query-migrate-nan-qemu2.3.json").read_text().strip()
HMP_72 = QMP_DATA / "hmp-info-migrate-qemu7.2-active-completed.txt"
HMP_72_SMALL = QMP_DATA / "hmp-info-migrate-qemu7.2-64mib-completed.txt"
# The line QEMU 7.2's monitor printed between two `info migrate` answers in HMP_72.
QEMU_ERROR = "Error: Can't migrate the vm that was paused due to previous migration"


def source_records() -> list[dict[str, str]]:
    lines = (QMP_DATA / "source.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def hmp(path: Path) -> tuple[list[MigrationStatus], HmpInfoMigrateParser]:
    parser = HmpInfoMigrateParser()
    out: list[MigrationStatus] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        out += parser.feed(line)
    return out + parser.finish(), parser


# --------------------------------------------------------------------------- -nan


def test_nan_in_a_qemu_reply_reads_as_null_and_the_rest_as_sent() -> None:
    answer = loads(NAN_REPLY)["return"]
    assert answer["xbzrle-cache"]["cache-miss-rate"] is None
    assert answer["xbzrle-cache"]["cache-miss"] == 8933
    status = MigrationStatus.model_validate(answer)
    assert status.status == "active" and status.total_time_ms == 1543124
    assert status.expected_downtime_ms == 1 and status.setup_time_ms == 13
    assert status.ram is not None
    assert status.ram.mbps == pytest.approx(830.636997)
    assert status.ram.transferred == 3100448901 and status.ram.dirty_sync_count == 4


def test_non_finite_spellings_are_null_but_strings_that_say_nan_are_kept() -> None:
    text = '{"a": nan, "b": -nan, "c": inf, "d": -inf, "e": NaN, "f": "-nan inf", "g": 1e3}'
    assert loads(text) == {"a": None, "b": None, "c": None, "d": None, "e": None,
                           "f": "-nan inf", "g": 1000.0}  # fmt: skip
    with pytest.raises(ValueError):
        loads("not json at all")


async def test_live_qmp_reader_keeps_going_after_a_reply_with_nan() -> None:
    records = source_records()
    greeting = records[0]["line"]
    caps_reply = next(
        r["line"] for r in records if r["dir"] == "s2c" and '"return": {}' in r["line"]
    )
    status_reply = next(r["line"] for r in records if '"running": true' in r["line"])
    ours, theirs = socket.socketpair()
    server_reader, server_writer = await asyncio.open_connection(sock=theirs)

    async def qemu() -> None:  # QEMU's side: real reply lines, ids set to the client's
        server_writer.write(greeting.encode() + b"\r\n")
        replies = {"qmp_capabilities": caps_reply, "query-migrate": NAN_REPLY,
                   "query-status": status_reply}  # fmt: skip
        while raw := await server_reader.readline():
            command = json.loads(raw)
            reply = re.sub(r'"id": ("[^"]*"|\d+)', f'"id": {command["id"]}',
                           replies[command["execute"]])  # fmt: skip
            server_writer.write(reply.encode() + b"\r\n")
            await server_writer.drain()

    task = asyncio.create_task(qemu())
    reader, writer = await asyncio.open_connection(sock=ours)
    client = await QmpClient.connect(reader, writer, timeout=5)
    try:
        status = await client.query_migrate()
        assert status.status == "active" and status.total_time_ms == 1543124
        assert not client.closed
        assert (await client.query_status()).running  # the session goes on
    finally:
        await client.close()
        server_writer.close()
        task.cancel()


# --------------------------------------------------------------------------- importer, JSON


def test_import_reads_a_nan_reply_and_skips_a_qemu_error_line_counting_it() -> None:
    lines = [json.dumps(r) for r in source_records()]
    lines.insert(len(lines) // 2, QEMU_ERROR)
    lines.insert(0, NAN_REPLY)
    events = import_qemu(lines, "guest", "h1", "h2", 1000.0)
    progress = [e for e in events if isinstance(e, MigrationProgress)]
    finished = [e for e in events if isinstance(e, MigrationFinished)]
    assert len(progress) > 10 and len(finished) == 1
    assert finished[0].ok and finished[0].total_time_ms == 7515 and finished[0].downtime_ms == 6
    notes = [e.text for e in events if isinstance(e, Note)]
    assert notes == [
        "imported from QEMU QMP query-migrate output; 1 lines not understood (skipped)"
    ]


def test_import_of_the_nan_reply_alone_is_an_active_migration() -> None:
    events = import_qemu([NAN_REPLY], "guest", "h1", "h2", 1000.0)
    finished = [e for e in events if isinstance(e, MigrationFinished)]
    assert not finished[0].ok and finished[0].error == "active"
    assert finished[0].total_time_ms == 1543124 and finished[0].transferred_bytes == 3100448901


# --------------------------------------------------------------------------- HMP


def test_hmp_info_migrate_qemu72_active_then_completed() -> None:
    statuses, parser = hmp(HMP_72)
    assert [s.status for s in statuses] == ["active", "completed", "completed"]
    active, done = statuses[0], statuses[1]
    assert active.total_time_ms == 1501 and active.expected_downtime_ms == 300
    assert active.setup_time_ms == 2 and active.downtime_ms is None
    assert active.ram is not None and active.ram.remaining == 261640 * 1024
    assert active.ram.total == 262664 * 1024 and active.ram.mbps == 0.0
    assert done.total_time_ms == 4023 and done.downtime_ms == 1
    assert done.ram is not None
    assert done.ram.transferred == 1037 * 1024 and done.ram.mbps == pytest.approx(2.34)
    assert done.ram.duplicate == 65555 and done.ram.normal == 115
    assert done.ram.normal_bytes == 460 * 1024 and done.ram.dirty_sync_count == 4
    assert done.ram.page_size == 4096 and done.ram.pages_per_second == 64
    assert parser.skipped == 1  # the "Error: Can't migrate ..." line, skipped and counted


def test_hmp_pasted_with_mangled_whitespace_reads_the_same() -> None:
    statuses, _ = hmp(HMP_72_SMALL)
    parser = HmpInfoMigrateParser()
    mangled: list[MigrationStatus] = []
    for line in HMP_72_SMALL.read_text(errors="replace").splitlines():
        line = "  " + line.replace(": ", ":\t  ").replace(" ", "  ") + " \r"
        mangled += parser.feed(line)
    mangled += parser.finish()
    assert mangled == statuses and parser.skipped == 0
    assert statuses[0].total_time_ms == 10 and statuses[0].ram is not None
    assert statuses[0].ram.mbps == pytest.approx(572.12)


def test_hmp_unknown_and_nan_values_are_skipped_or_null_never_raised() -> None:
    parser = HmpInfoMigrateParser()
    out: list[MigrationStatus] = []
    for line in ["Migration status: active", "throughput: -nan mbps", "total time: 5 ms",
                 "something new: 3 widgets", "\x00\x1b[2J", "downtime: lots ms"]:  # fmt: skip
        out += parser.feed(line)
    out += parser.finish()
    assert out[0].ram is not None and out[0].ram.mbps is None and out[0].total_time_ms == 5
    assert out[0].downtime_ms is None and parser.skipped == 3


def test_hmp_qemu_10_1_layout_from_source() -> None:
    # Format from QEMU's migration/migration-hmp-cmds.c (10.1), not captured here.
    parser = HmpInfoMigrateParser()
    out: list[MigrationStatus] = []
    for line in ["Status: completed", "Time (ms): total=4023, setup=2, down=1", "RAM info:",
                 "  Throughput (mbps): 2.34", "  Sizes (KB): psize=4, total=262664",
                 "    transferred=1037, remain=0,", "    precopy=1037, multifd=0, postcopy=0",
                 "  Pages: normal=115, zero=65555, rate_per_sec=64",
                 "  Others: dirty_syncs=4"]:  # fmt: skip
        out += parser.feed(line)
    out += parser.finish()
    (done,) = out
    assert done.status == "completed" and done.total_time_ms == 4023 and done.downtime_ms == 1
    assert done.ram is not None and done.ram.transferred == 1037 * 1024
    assert done.ram.dirty_sync_count == 4 and done.ram.duplicate == 65555
    assert parser.skipped == 0


def test_miglab_import_qemu_detects_hmp_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "hmp.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "import", "qemu", str(HMP_72), "-o", str(log),
         "--start", "1000"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    session = read_session(log)
    finished = [e for e in session.events if isinstance(e, MigrationFinished)]
    assert len(finished) == 1 and finished[0].ok
    assert finished[0].total_time_ms == 4023 and finished[0].downtime_ms == 1
    assert finished[0].transferred_bytes == 1037 * 1024 and finished[0].iterations == 4
    notes = [e.text for e in session.events if isinstance(e, Note)]
    assert "imported from QEMU HMP info migrate output; 1 lines not understood (skipped)" in notes


def test_hmp_before_qemu_5_1_wrote_milliseconds() -> None:
    # Format from QEMU's source before 5.1 (hmp.c / monitor/hmp-cmds.c), not captured here.
    parser = HmpInfoMigrateParser()
    out: list[MigrationStatus] = []
    for line in ["capabilities: xbzrle: off rdma-pin-all: off auto-converge: off",
                 "Migration status: completed", "total time: 4023 milliseconds",
                 "downtime: 1 milliseconds", "setup: 2 milliseconds",
                 "transferred ram: 1037 kbytes", "throughput: 2.34 mbps",
                 "dirty sync count: 4"]:  # fmt: skip
        out += parser.feed(line)
    (done,) = out + parser.finish()
    assert (done.total_time_ms, done.downtime_ms, done.setup_time_ms) == (4023, 1, 2)
    assert done.ram is not None and done.ram.transferred == 1037 * 1024
    assert done.ram.dirty_sync_count == 4 and parser.skipped == 0


def test_hmp_cancelled_then_failed_with_qemus_reason() -> None:
    capture = QMP_DATA / "hmp-info-migrate-qemu7.2-cancelled-failed.txt"
    statuses, parser = hmp(capture)
    assert [s.status for s in statuses] == ["cancelled", "failed"]
    failed = statuses[1]
    assert failed.error_desc == "Failed to connect to '127.0.0.1:1': Connection refused"
    assert failed.total_time_ms == 0 and failed.ram is None and parser.skipped == 0
    lines = capture.read_text(errors="replace").splitlines()
    finished = [e for e in import_qemu(lines, "g", "h1", "h2", 0.0)
                if isinstance(e, MigrationFinished)]  # fmt: skip
    assert not finished[0].ok and finished[0].error == failed.error_desc
