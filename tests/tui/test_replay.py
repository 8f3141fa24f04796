"""The replay backend and `miglab replay`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from backend.events import Event
from backend.session import read_session
from tests.tui import session_fixture as fixture
from tui.backend_api import ActionRefused, ReplayControls
from tui.commands import replay as replay_command
from tui.commands.common import BadInput
from tui.replay import ReplayBackend


async def test_speed_zero_publishes_every_event_in_order(session_log: Path) -> None:
    backend = ReplayBackend.open(session_log, speed=0)
    seen: list[Event] = []
    backend.subscribe(seen.append)
    await backend.start()
    await backend.wait_finished()
    assert seen == read_session(session_log).events
    assert [e.t for e in seen] == sorted(e.t for e in seen)
    assert backend.finished and backend.clock() == seen[-1].t
    assert backend.duration == pytest.approx(58.5)
    assert backend.session_start == fixture.T0
    await backend.close()


async def test_the_lab_comes_from_the_log_header(session_log: Path) -> None:
    backend = ReplayBackend.open(session_log)
    layout = backend.layout
    assert layout.name == "sandbox" and layout.storage_host == "storage"
    assert layout.hypervisor_hosts == ("qemu1", "qemu2") and layout.guest == "guest"
    assert layout.iqn == fixture.IQN and layout.portal == fixture.PORTAL and layout.lun == 1
    assert backend.readonly and isinstance(backend, ReplayControls)


async def test_nothing_is_published_while_paused(session_log: Path) -> None:
    backend = ReplayBackend.open(session_log, speed=0)
    seen: list[Event] = []
    backend.subscribe(seen.append)
    backend.toggle_pause()
    await backend.start()
    for _ in range(20):
        await asyncio.sleep(0)
    assert seen == [] and backend.clock() == backend.session_start
    backend.toggle_pause()
    await backend.wait_finished()
    assert len(seen) == len(backend.session.events)
    await backend.close()


async def test_at_a_finite_speed_the_clock_leads_the_events(session_log: Path) -> None:
    # 58.5 session seconds at 10000x: done in a few ms of waiting, in the log's order.
    backend = ReplayBackend.open(session_log, speed=10000)
    seen: list[Event] = []
    backend.subscribe(lambda e: seen.append(e) or None)  # type: ignore[func-returns-value]
    await backend.start()
    await backend.wait_finished()
    assert len(seen) == len(backend.session.events)
    assert backend.clock() == seen[-1].t
    await backend.close()


async def test_close_stops_a_replay_midway(session_log: Path) -> None:
    backend = ReplayBackend.open(session_log, speed=1)
    seen: list[Event] = []
    backend.subscribe(seen.append)
    await backend.start()
    await asyncio.sleep(0.05)
    await backend.close()
    count = len(seen)
    await asyncio.sleep(0.05)
    assert len(seen) == count < len(backend.session.events)


async def test_a_replay_refuses_every_action(session_log: Path) -> None:
    backend = ReplayBackend.open(session_log)
    for action in (backend.prepare(), backend.migrate("qemu2"), backend.plan_cancel()):
        with pytest.raises(ActionRefused, match="cannot change hosts"):
            await action


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="miglab")
    replay_command.register(parser.add_subparsers())
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the session log"),
        ("", "empty file"),
        ('{"kind": "sample"}\n', "not a miglab session log"),
    ],
)
def test_miglab_replay_of_an_unreadable_log_is_bad_input(
    tmp_path: Path, content: str | None, message: str
) -> None:
    log = tmp_path / "broken.jsonl"
    if content is not None:
        log.write_text(content)
    args = parse("replay", str(log))
    with pytest.raises(BadInput, match=message) as raised:
        args.handler(args)
    assert str(log) in str(raised.value)


def test_miglab_replay_of_a_log_without_events_is_bad_input(tmp_path: Path) -> None:
    log = tmp_path / "empty-session.jsonl"
    asyncio.run(fixture.write_session(log, events=[]))
    args = parse("replay", str(log))
    with pytest.raises(BadInput, match="no events"):
        args.handler(args)


@pytest.mark.parametrize("speed", ["-1", "fast", "nan", "inf"])
def test_miglab_replay_rejects_a_bad_speed(speed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse("replay", "x.jsonl", "--speed", speed)
    assert raised.value.code == 2
    assert "--speed" in capsys.readouterr().err


def test_miglab_replay_accepts_speeds(tmp_path: Path) -> None:
    assert parse("replay", "x.jsonl").speed == 1.0
    assert parse("replay", "x.jsonl", "--speed", "0").speed == 0.0
    assert parse("replay", "x.jsonl", "--speed", "16").speed == 16.0


async def test_a_large_log_is_read_as_it_plays_not_before(tmp_path: Path) -> None:
    from tests.support.report_logs import Shape, write_log

    log = write_log(tmp_path / "large.jsonl", Shape(seed=3, seconds=6000))  # ~42k events
    backend = ReplayBackend.open(log, speed=0)
    # Read so far: the first events and the window that puts them in time order.
    assert backend._log is not None and backend._log._file.tell() < log.stat().st_size / 3
    seen: list[Event] = []
    backend.subscribe(seen.append)
    await backend.start()
    await backend.wait_finished()
    expected = sorted(read_session(log).events, key=lambda e: e.t)
    assert seen == expected and backend.finished and backend._log is None
    assert backend.duration == pytest.approx(expected[-1].t - backend.session_start)
    await backend.close()
