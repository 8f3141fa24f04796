"""Events and the session log: round trips, crash tolerance, the reader's forgiveness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backend.events import (
    CommandFinished,
    EventBus,
    HostState,
    MigrationFinished,
    Phase,
    Sample,
    UnknownEvent,
    parse_event,
)
from backend.session import (
    END_KIND,
    HEADER_KIND,
    SessionLogError,
    SessionLogWriter,
    make_header,
    read_session,
)

ROOT = Path(__file__).resolve().parents[2]


def test_every_event_kind_round_trips_through_json() -> None:
    events = [
        HostState(host="xen1", state="connected", rtt_ms=1.5),
        Phase(name="baseline"),
        Sample(
            probe="ping", host="storage", values={"rtt_ms": 0.31, "seq": 4}, unit={"rtt_ms": "ms"}
        ),
        CommandFinished(host="xen1", cmd_id=3, argv=["xl", "list"], exit_status=0, duration_s=0.1),
        MigrationFinished(domain="guest", source="xen1", dest="xen2", ok=True, downtime_ms=3.0),
    ]
    for event in events:
        again = parse_event(json.loads(json.dumps(event.model_dump(mode="json"))))
        assert again == event and type(again) is type(event)


def test_unknown_kinds_and_bad_fields_are_kept_not_lost() -> None:
    future = parse_event({"kind": "guest.balloon", "t": 1.0, "target_mb": 512})
    assert isinstance(future, UnknownEvent) and future.model_extra == {"target_mb": 512}
    broken = parse_event({"kind": "phase", "t": 1.0})  # "name" missing: an older writer
    assert isinstance(broken, UnknownEvent) and broken.kind == "phase"


def test_bus_feeds_its_subscribers_in_order() -> None:
    bus = EventBus()
    first: list[str] = []
    last: list[str] = []
    bus.subscribe(lambda e: first.append(e.name))  # type: ignore[attr-defined]
    bus.subscribe(lambda e: 1 / 0)  # a broken subscriber must not stop the others
    bus.subscribe(lambda e: last.append(e.name))  # type: ignore[attr-defined]
    for name in ("warmup", "baseline", "migrating", "after"):
        bus.publish(Phase(name=name))
    assert first == last == ["warmup", "baseline", "migrating", "after"]


async def test_writer_puts_header_first_and_end_last(tmp_path: Path) -> None:
    bus = EventBus()
    path = tmp_path / "logs" / "s.jsonl"
    header = make_header(lab={"lab": {"name": "x"}}, lab_file="lab.toml", scenario="migrate-ping")
    async with await SessionLogWriter.create(path, header, bus) as writer:
        for seq in range(100):
            bus.publish(Sample(probe="ping", host="s", values={"rtt_ms": seq / 10, "seq": seq}))
        bus.publish(Phase(name="after"))
    assert writer.events_written == 101
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["kind"] == HEADER_KIND
    assert json.loads(lines[-1]) | {"t": 0} == {"kind": END_KIND, "t": 0, "status": "ok"}
    session = read_session(path)
    assert not session.cut_short and not session.truncated_last_line
    samples = session.of_kind("sample")
    assert [s.values["seq"] for s in samples] == list(range(100))  # type: ignore[attr-defined]
    assert session.header["scenario"] == "migrate-ping"


async def test_writer_refuses_to_overwrite_a_log(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("precious\n")
    with pytest.raises(FileExistsError):
        await SessionLogWriter.create(path, make_header())
    assert path.read_text() == "precious\n"


async def test_a_failure_inside_the_session_is_marked_in_the_log(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    bus = EventBus()
    with pytest.raises(RuntimeError):
        async with await SessionLogWriter.create(path, make_header(), bus):
            bus.publish(Phase(name="migrating"))
            raise RuntimeError("host lost")
    session = read_session(path)
    assert session.end is not None and session.end["status"] == "failed"
    assert [e.kind for e in session.events] == ["phase"]


def test_reader_tolerates_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    header = json.dumps(make_header())
    good = json.dumps(Phase(name="baseline").model_dump(mode="json"))
    path.write_text(f'{header}\n{good}\n{{"kind": "sample", "probe": "pi')
    session = read_session(path)
    assert session.truncated_last_line and session.cut_short and session.bad_lines == []
    assert [e.kind for e in session.events] == ["phase"]


def test_reader_reports_corrupt_middle_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    header = json.dumps(make_header())
    good = json.dumps(Phase(name="baseline").model_dump(mode="json"))
    path.write_text(f"{header}\n{good}\nnot json\n[1, 2]\n{good}\n")
    session = read_session(path)
    assert session.bad_lines == [3, 4] and len(session.events) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("", "empty file"),
        ('{"kind": "sample"}\n', "not a miglab session log"),
        ("hello\n", "not a miglab session log"),
    ],
)
def test_unreadable_logs_say_why(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "x.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SessionLogError, match=message):
        read_session(path)


WRITER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from backend.events import EventBus, Sample
    from backend.session import SessionLogWriter, make_header

    async def main() -> None:
        bus = EventBus()
        await SessionLogWriter.create(sys.argv[1], make_header(), bus)
        seq = 0
        while True:  # until SIGKILL
            for _ in range(200):
                bus.publish(Sample(probe="ping", host="s", values={"seq": seq, "pad": 1.5e300}))
                seq += 1
            await asyncio.sleep(0)

    asyncio.run(main())
    """
)


def test_sigkill_mid_write_leaves_a_log_whose_complete_lines_all_load(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(path)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    # However long this machine takes to get there (the writer alive all along).
    while not path.exists() or path.stat().st_size < 2_000_000:
        assert process.poll() is None, "the writer died before it got going"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert path.stat().st_size >= 2_000_000, "the writer never got going"
    session = read_session(path)
    assert session.cut_short and session.bad_lines == []
    seqs = [e.values["seq"] for e in session.events]  # type: ignore[attr-defined]
    assert len(seqs) > 10_000 and seqs == list(range(len(seqs)))  # complete, in order, no gaps


def test_reader_counts_events_it_cannot_make_sense_of_as_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    header = json.dumps(make_header())
    path.write_text(f'{header}\n{{"kind": "phase", "t": "noon"}}\n{{"t": 1}}\n')
    session = read_session(path)
    assert session.bad_lines == [2, 3] and session.events == []
