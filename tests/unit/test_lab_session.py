"""The session log of a LabSession: header, the events from before it began, end status.

No host is reached here: the events are published on the session's bus as the hosts
and drivers would publish them. What the console and ``miglab run`` record on a real
(simulated) lab is in tests/tui/test_live_backend.py and tests/integration/test_runner.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from backend.config import parse_lab
from backend.events import HostState, Note, Phase
from backend.lab_session import LabSession
from backend.session import SessionLogWriteError, read_session
from tests.unit.test_lab_where import LAB


def session(log: Path | None, rename: Callable[[int], Path] | None = None) -> LabSession:
    return LabSession(parse_lab(LAB), log=log, rename=rename)


async def test_the_log_has_the_header_then_the_early_events_then_the_end(tmp_path: Path) -> None:
    log = tmp_path / "s.jsonl"
    lab = session(log)
    failures: list[SessionLogWriteError] = []
    lab.publish(HostState(host="xen1", state="connecting"))
    lab.publish(Note(text="before the log began"))
    assert not log.exists()
    hosts = {"xen1": {"reachable": False, "error": "refused"}}
    await lab.open_log(hosts, failures.append, scenario="migrate-ping")
    lab.publish(Phase(name="baseline"))
    await lab.close("interrupted")

    saved = read_session(log)
    assert saved.header["scenario"] == "migrate-ping" and saved.header["hosts"] == hosts
    assert saved.header["simulated"] is False and saved.header["lab"]["lab"]["name"]
    assert [e.kind for e in saved.events] == ["host.state", "note", "phase"]
    assert saved.end is not None and saved.end["status"] == "interrupted"
    assert failures == []


async def test_events_after_the_end_are_not_written(tmp_path: Path) -> None:
    log = tmp_path / "s.jsonl"
    lab = session(log)
    await lab.open_log({}, lambda error: None)
    await lab.close("ok")
    lab.publish(Note(text="too late"))  # the bus is closed: nothing reaches the log
    saved = read_session(log)
    assert saved.events == [] and saved.end is not None and saved.end["status"] == "ok"


async def test_a_log_that_exists_is_never_overwritten(tmp_path: Path) -> None:
    log = tmp_path / "s.jsonl"
    log.write_text("someone else's\n")
    fixed = session(log)
    with pytest.raises(FileExistsError):
        await fixed.open_log({}, lambda error: None)
    await fixed.close("ok")
    assert log.read_text() == "someone else's\n"

    renamed = session(log, rename=lambda attempt: tmp_path / f"s-{attempt + 1}.jsonl")
    renamed.publish(Note(text="kept"))
    await renamed.open_log({}, lambda error: None)
    await renamed.close("ok")
    assert renamed.log_path == tmp_path / "s-2.jsonl"
    assert [e.kind for e in read_session(tmp_path / "s-2.jsonl").events] == ["note"]


async def test_without_a_log_the_session_does_not_record(tmp_path: Path) -> None:
    lab = session(None)
    assert lab.bus.subscriber_count == 2 and lab.log_path is None  # its meter and its ping
    await lab.open_log({}, lambda error: None)  # nothing to begin
    await lab.close("ok")
    assert list(tmp_path.iterdir()) == []
