"""The console's flows, key by key: p, b, m; r to the end; x and q while a scenario runs.

``flow_backend`` makes the backend under test. Today that is the scripted lab
(tests/tui/scripted.py); the simulated lab joins the parameter list when it exists,
and every flow here must then pass against it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from backend.session import read_session
from backend.transport.base import CommandFailed, CommandResult
from tests.tui.conftest import drained, main_screen, running
from tests.tui.scripted import CLEANUP_ARGV, ScriptedBackend
from tui.app import MiglabApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.pickers import Choice
from tui.widgets.command_log import CommandLog
from tui.widgets.keybar import KeyBar
from tui.widgets.migration import MigrationBar
from tui.widgets.panes import GuestPane, StoragePane
from tui.widgets.plot import TraceGrid
from tui.widgets.status import StatusBar

Factory = Callable[..., ScriptedBackend]


@pytest.fixture(params=["scripted"])
def flow_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    def make(**options: object) -> ScriptedBackend:
        return ScriptedBackend(tmp_path / "session.jsonl", **options)  # type: ignore[arg-type]

    return make


def text(widget: object) -> str:
    return str(widget.render())  # type: ignore[attr-defined]


async def finish_actions(app: MiglabApp) -> None:
    """Wait for the running action (a worker) to end and its events to be drawn."""
    await app.workers.wait_for_complete()
    await drained(app)


async def prepare_and_boot(app: MiglabApp, pilot: object) -> None:
    await pilot.press("p")  # type: ignore[attr-defined]
    await finish_actions(app)
    await pilot.press("b")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    assert isinstance(app.screen, Choice)
    await pilot.press("enter")  # type: ignore[attr-defined]  # the first host: qemu1
    await finish_actions(app)


async def test_p_b_m_moves_the_guest_and_logs_everything(flow_backend: Factory) -> None:
    backend = flow_backend()
    async with running(backend) as (app, pilot):
        screen = main_screen(app)
        status = text(screen.query_one(StatusBar))
        assert "SIMULATED" in status and "READ-ONLY" not in status and "REPLAY" not in status
        await pilot.press("p")
        await finish_actions(app)
        assert "exported" in text(screen.query_one(StoragePane))
        await pilot.press("b")
        await pilot.pause()
        choice = app.screen
        assert isinstance(choice, Choice)
        assert [ident for ident, _ in choice.options] == ["qemu1", "qemu2"]
        await pilot.press("enter")
        await finish_actions(app)
        assert "on qemu1" in text(screen.query_one(GuestPane))
        await pilot.press("m")
        await finish_actions(app)
        assert "on qemu2" in text(screen.query_one(GuestPane))
        assert "migrated guest qemu1 → qemu2" in text(screen.query_one(MigrationBar))
        table = screen.query_one(CommandLog).table
        commands = [str(table.get_row_at(i)[4]) for i in range(table.row_count)]
        assert any(c.startswith("tgtadm --lld iscsi --op new --mode target") for c in commands)
        assert any(c.startswith("iscsiadm -m node") and c.endswith("--login") for c in commands)
        assert any(c.startswith("qemu-system-x86_64 -name guest") for c in commands)
        assert "qmp migrate uri=tcp:198.18.0.3:4444" in commands
        assert backend.calls == ["prepare", "boot qemu1", "migrate qemu2"]
        await pilot.press("q")
        await pilot.pause()
    assert backend.calls[-1] == "close"
    session = read_session(backend.session_log)
    kinds = {event.kind for event in session.events}
    assert {"storage.exported", "initiator.session", "domain.state"} <= kinds
    assert {"command.started", "command.finished", "migration.finished"} <= kinds
    finished = session.of_kind("migration.finished")[-1]
    assert finished.dest == "qemu2" and finished.ok  # type: ignore[attr-defined]
    assert session.end is not None and session.end["status"] == "ok"


async def test_r_runs_migrate_ping_to_the_end(flow_backend: Factory) -> None:
    backend = flow_backend()
    async with running(backend) as (app, pilot):
        await prepare_and_boot(app, pilot)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, Choice)
        assert [ident for ident, _ in app.screen.options] == ["migrate-ping"]
        await pilot.press("enter")
        await finish_actions(app)
        screen = main_screen(app)
        assert screen.running is None
        assert screen.state.phase == "after"
        assert "on qemu2" in text(screen.query_one(GuestPane))
        assert set(screen.query_one(TraceGrid).plots) == {
            ("ping", "storage"),
            ("sysbench-cpu", "guest"),
        }
        assert any("migrate-ping done" in n.message for n in app._notifications)
        await pilot.press("q")
        await pilot.pause()
    session = read_session(backend.session_log)
    assert session.of_kind("phase")[-1].name == "after"  # type: ignore[attr-defined]
    assert len(session.of_kind("sample")) > 500


async def test_x_asks_with_the_exact_commands_and_cancels_on_yes(flow_backend: Factory) -> None:
    backend = flow_backend(hold_scenario=True)
    async with running(backend) as (app, pilot):
        await prepare_and_boot(app, pilot)
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause(0.1)
        screen = main_screen(app)
        assert screen.running == "migrate-ping" and backend.scenario_running
        await pilot.press("x")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert "pkill -INT -x ping" in text(dialog.query_one("#command-list"))
        await pilot.press("n")
        await pilot.pause()
        assert "cancel" not in backend.calls and backend.scenario_running
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await finish_actions(app)
        assert "cancel" in backend.calls and not backend.scenario_running
        assert screen.running is None
        rows = screen.query_one(CommandLog).table
        last = [str(cell) for cell in rows.get_row_at(rows.row_count - 1)]
        assert last[4] == " ".join(CLEANUP_ARGV)  # the cleanup ran and was logged
        await pilot.press("q")
        await pilot.pause()


async def test_q_while_running_stops_the_scenario_then_saves_the_log(flow_backend: Factory) -> None:
    backend = flow_backend(hold_scenario=True)
    async with running(backend) as (app, pilot):
        await prepare_and_boot(app, pilot)
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert backend.scenario_running
        await pilot.press("q")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert "migrate-ping is running" in dialog.question
        assert app.focused is not None and app.focused.id == "no"
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert backend.calls[-2:] == ["cancel", "close"]  # stopped first, then closed
    assert not backend.scenario_running
    session = read_session(backend.session_log)
    assert session.end is not None
    notes = [e.text for e in session.of_kind("note")]  # type: ignore[attr-defined]
    assert "migrate-ping cancelled; probes stopped" in notes
    cleanup = [e for e in session.of_kind("command.started") if tuple(e.argv) == CLEANUP_ARGV]  # type: ignore[attr-defined]
    assert len(cleanup) == 1


async def test_a_failed_operation_names_host_command_and_stderr(flow_backend: Factory) -> None:
    result = CommandResult(
        host="qemu1",
        argv=["iscsiadm", "-m", "node", "--login"],
        exit_status=20,
        stdout="",
        stderr="iscsiadm: Could not log into all portals",
        duration_s=0.2,
    )
    backend = flow_backend(fail={"prepare": CommandFailed(result)})
    async with running(backend) as (app, pilot):
        await pilot.press("p")
        await finish_actions(app)
        errors = [n for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1
        message = errors[0].message
        assert "qemu1" in message and "iscsiadm -m node --login" in message
        assert "Could not log into all portals" in message
        assert errors[0].title == "prepare failed"
        assert main_screen(app).running is None


async def test_the_key_bar_of_a_live_lab_has_the_lab_keys(flow_backend: Factory) -> None:
    async with running(flow_backend(), size=(160, 40)) as (app, _pilot):
        bar = str(main_screen(app).query_one(KeyBar).render())
        for shown in ("p prepare", "b boot", "m migrate", "r run", "x cancel", "q quit"):
            assert shown in bar
        assert "space pause" not in bar


async def test_readonly_console_refuses_host_changing_keys(flow_backend: Factory) -> None:
    backend = flow_backend(readonly=True)
    async with running(backend) as (app, pilot):
        assert "p prepare" not in str(main_screen(app).query_one(KeyBar).render())
        for key in ("p", "b", "m", "r"):
            await pilot.press(key)
            await pilot.pause()
        assert backend.calls == []
        messages = [n.message for n in app._notifications]
        assert len(messages) == 4
        assert all("started with --readonly" in m for m in messages)


async def test_s_shuts_the_guest_down_after_showing_the_command(flow_backend: Factory) -> None:
    backend = flow_backend()
    async with running(backend) as (app, pilot):
        await prepare_and_boot(app, pilot)
        await pilot.press("s")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        listed = text(dialog.query_one("#command-list"))
        assert "on qemu1:" in listed and "qmp system_powerdown" in listed
        await pilot.press("y")
        await finish_actions(app)
        assert backend.calls[-1] == "shutdown qemu1"


async def test_unexport_from_the_palette_asks_first(flow_backend: Factory) -> None:
    backend = flow_backend()
    async with running(backend) as (app, pilot):
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"unexport")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.3)
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        listed = text(dialog.query_one("#command-list"))
        assert "on storage:" in listed
        assert "tgtadm --lld iscsi --op delete --mode target --tid 1" in listed
        assert app.focused is not None and app.focused.id == "no"
        await pilot.press("enter")  # No
        await finish_actions(app)
        assert "unexport" not in backend.calls
