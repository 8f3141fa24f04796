"""Snapshots of the console (pytest-textual-snapshot): the main screen at 80x24 and
160x48 and the confirmation dialog, replaying the recorded session to its end.

Everything on screen is deterministic: the replay's clock is the session's, the log
path is relative, animations are off and the plots are waited for. Snapshots depend
on the exact Textual, Rich and plotext versions (pinned in the test extras); after an
intended change, review and accept with ``pytest tests/tui --snapshot-update``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from backend.drivers.base import HostCommand
from tests.tui.conftest import drained
from tests.tui.session_fixture import write_session
from tui.app import MiglabApp
from tui.replay import ReplayBackend
from tui.screens.confirm import ConfirmScreen
from tui.widgets.plot import TraceGrid

SnapCompare = Callable[..., bool]


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[MiglabApp, ReplayBackend]:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.chdir(tmp_path)
    asyncio.run(write_session(Path("session.jsonl")))
    backend = ReplayBackend.open("session.jsonl", speed=0)
    app = MiglabApp(backend, theme="miglab-dark")
    app.animation_level = "none"
    return app, backend


async def settled(pilot: Pilot[int], backend: ReplayBackend) -> None:
    """The replay at its end, every event drawn, every plot redrawn with all of it."""
    await backend.wait_finished()
    await drained(pilot.app)  # type: ignore[arg-type]
    assert pilot.app.screen.query_one(TraceGrid).plots
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_main_screen(
    snap_compare: SnapCompare, console: tuple[MiglabApp, ReplayBackend], size: tuple[int, int]
) -> None:
    app, backend = console
    assert snap_compare(app, terminal_size=size, run_before=lambda pilot: settled(pilot, backend))


def test_confirmation_dialog(
    snap_compare: SnapCompare, console: tuple[MiglabApp, ReplayBackend]
) -> None:
    app, backend = console
    commands = [
        HostCommand(
            "storage",
            ("tgtadm", "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1"),
        ),
        HostCommand(
            "qemu1", ("iscsiadm", "-m", "node", "-T", "iqn.2024-01.lab.storage:disk1", "--logout")
        ),
    ]

    async def run_before(pilot: Pilot[int]) -> None:
        await settled(pilot, backend)
        dialog = ConfirmScreen(
            "Remove the export?",
            "Remove the disk's export on storage. Hosts logged in lose the disk.",
            commands,
        )
        await pilot.app.push_screen(dialog)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
