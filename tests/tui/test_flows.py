"""The console's flows, key by key: p, b, m; r to the end; x and q while a scenario runs.

``flow_backend`` makes the backend under test, on two labs:

* "scripted": the recorded QEMU + tgt session acted out (tests/tui/scripted.py), hosts
  qemu1/qemu2;
* "sim": the live backend (LabController, drivers, runner, over SSH) on the simulated
  study lab (tests/tui/sim_backend.py): Xen + IET, hosts xenserver1/xenserver2, at 200x
  speed with the scenarios' quick timelines.

Every flow runs unchanged on both: host names come from the backend's layout, and what
differs between the labs (the commands their drivers run, what a scenario measures) is
in the lab's :class:`Expect`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import OptionList

from backend.events import CommandFinished, CommandStarted
from backend.session import Session, read_session
from backend.transport.base import CommandFailed, CommandResult
from tests.support.waiting import until
from tests.tui.conftest import drained, main_screen, quit_console, running
from tests.tui.scripted import CLEANUP_ARGV, ScriptedBackend
from tests.tui.sim_backend import bound_textual_idle_wait, sim_backend, simulated_lab
from tui.app import MiglabApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.pickers import Choice
from tui.widgets.command_log import CommandLog
from tui.widgets.keybar import KeyBar
from tui.widgets.migration import MigrationBar
from tui.widgets.panes import GuestPane, StoragePane
from tui.widgets.plot import TraceGrid
from tui.widgets.status import StatusBar

Rows = list[list[str]]


@dataclass(frozen=True)
class Expect:
    """What the flows expect of one lab: the commands its drivers run, what it measures."""

    export: str
    """How the command that exports the disk begins."""
    boot: str
    """How the command that boots the guest begins."""
    migrate: str
    """The migration command (or QMP request), whole."""
    traces: frozenset[tuple[str, str]]
    """(probe, host) of the traces migrate-ping draws."""
    min_samples: int
    """migrate-ping's samples in the session log, at least."""
    cancel_lists: str
    """In the cancel dialog while migrate-ping pings."""
    shutdown_lists: str
    unexport_lists: str
    """In the unexport dialog, with the disk exported and both hosts logged in."""
    login_stderr: str
    """What iscsiadm says when a login fails."""
    cleanup_logged: Callable[[Rows], bool]
    """The log pane shows that cancelling migrate-ping stopped its probe."""
    stopped_cleanly: Callable[[Session], bool]
    """The session log shows that quitting stopped migrate-ping and left nothing running."""


class FlowLab:
    """Makes the backend under test (``flow_backend(**options)``) and says what to expect."""

    def __init__(
        self,
        make: Callable[..., Any],
        expect: Expect,
        guest_up: Callable[[], bool] = lambda: True,
    ) -> None:
        self._make = make
        self.expect = expect
        self.guest_up = guest_up
        """Whether the guest booted last has finished booting (it migrates only then)."""

    async def booted(self) -> None:
        await until(self.guest_up)

    def __call__(
        self,
        *,
        readonly: bool = False,
        hold_scenario: bool = False,
        broken_login: bool = False,
    ) -> Any:
        return self._make(readonly=readonly, hold_scenario=hold_scenario, broken_login=broken_login)


def _scripted(log: Path) -> FlowLab:
    def make(*, readonly: bool, hold_scenario: bool, broken_login: bool) -> ScriptedBackend:
        fail: dict[str, Exception] = {}
        if broken_login:
            result = CommandResult(
                host="qemu1",
                argv=["iscsiadm", "-m", "node", "--login"],
                exit_status=20,
                stdout="",
                stderr="iscsiadm: Could not log into all portals",
                duration_s=0.2,
            )
            fail["prepare"] = CommandFailed(result)
        return ScriptedBackend(log, readonly=readonly, hold_scenario=hold_scenario, fail=fail)

    def cleanup_logged(rows: Rows) -> bool:
        return rows[-1][4] == " ".join(CLEANUP_ARGV)  # the cleanup ran, last

    def stopped_cleanly(session: Session) -> bool:
        cleanup = [e for e in session.of_kind("command.started") if tuple(e.argv) == CLEANUP_ARGV]  # type: ignore[attr-defined]
        return len(cleanup) == 1

    return FlowLab(
        make,
        Expect(
            export="tgtadm --lld iscsi --op new --mode target",
            boot="qemu-system-x86_64 -name guest",
            migrate="qmp migrate uri=tcp:198.18.0.3:4444",
            traces=frozenset({("ping", "storage"), ("sysbench-cpu", "guest")}),
            min_samples=500,
            cancel_lists="pkill -INT -x ping",
            shutdown_lists="qmp system_powerdown",
            unexport_lists="tgtadm --lld iscsi --op delete --mode target --tid 1",
            login_stderr="Could not log into all portals",
            cleanup_logged=cleanup_logged,
            stopped_cleanly=stopped_cleanly,
        ),
    )


def _simulated(sim: Any, log: Path) -> FlowLab:
    def make(**options: bool) -> Any:
        return sim_backend(sim, log, **options)

    def cleanup_logged(rows: Rows) -> bool:
        # The runner's cleanup stopped ping: the transport ended it and logged that.
        return any(row[4].startswith("ping ") and row[2] == "cancelled" for row in rows)

    def stopped_cleanly(session: Session) -> bool:
        # Every command the scenario started has ended; its ping was stopped, not lost.
        kinds = [e.kind for e in session.events]
        run = session.events[kinds.index("experiment.started") : kinds.index("experiment.finished")]
        started = {e.cmd_id for e in run if isinstance(e, CommandStarted)}
        finished = [e for e in session.events if isinstance(e, CommandFinished)]
        pings = [
            e
            for e in finished
            if e.argv[0] == "ping" and e.failure == "cancelled" and e.cmd_id in started
        ]
        ended = [e.status for e in session.of_kind("experiment.finished")]  # type: ignore[attr-defined]
        return (
            started <= {e.cmd_id for e in finished} and len(pings) == 1 and ended == ["interrupted"]
        )

    def guest_up() -> bool:
        # xl create returns while the guest boots; the simulated xl migrates it once up.
        return bool(sim.model.guest.status == "running")

    return FlowLab(
        make,
        Expect(
            export="ietadm --op new --tid=1 --params Name=iqn.2009-06.br.ufla.lab:guest-disk",
            boot="xl create /etc/xen/guest.cfg",
            migrate="xl -vvv migrate guest 127.0.0.1",  # every simulated host is on loopback
            traces=frozenset({("ping", "iSCSIserver")}),
            min_samples=300,
            cancel_lists="stop ping -D -O -n -i 1",
            shutdown_lists="xl shutdown -w guest",
            unexport_lists="ietadm --op delete --tid=1",
            login_stderr="Could not log into all portals",
            cleanup_logged=cleanup_logged,
            stopped_cleanly=stopped_cleanly,
        ),
        guest_up,
    )


@pytest.fixture(params=["scripted", "sim"])
async def flow_backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FlowLab]:
    log = tmp_path / "session.jsonl"
    if request.param == "scripted":
        yield _scripted(log)
        return
    bound_textual_idle_wait(monkeypatch)
    async with simulated_lab() as sim:
        yield _simulated(sim, log)


def text(widget: object) -> str:
    return str(widget.render())  # type: ignore[attr-defined]


def kept_toasts(app: MiglabApp) -> list[str]:
    """Every notification's message from now on: a toast may expire before the test looks."""
    shown: list[str] = []
    add = app._notifications.add

    def record(notification: Any) -> Any:
        shown.append(notification.message)
        return add(notification)

    app._notifications.add = record  # type: ignore[method-assign]
    return shown


def rows(app: MiglabApp) -> Rows:
    table = main_screen(app).query_one(CommandLog).table
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def exported(app: MiglabApp) -> bool:
    """The storage pane says the disk is exported (not "not exported")."""
    shown = text(main_screen(app).query_one(StoragePane))
    return "exported" in shown and "not exported" not in shown


async def dialog(app: MiglabApp, pilot: Any) -> ConfirmScreen:
    """The confirmation dialog, once the backend's plan is in it (a live plan asks hosts)."""
    await until(lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.pause()  # mounted and focused
    screen = app.screen
    assert isinstance(screen, ConfirmScreen)
    return screen


async def finish_actions(app: MiglabApp) -> None:
    """Wait for the running action (a worker) to end and its events to be drawn.

    An action the user stopped may end by returning or by raising (the protocol allows
    both; the live backend raises CancelledError, which the console shows as "stopped"),
    so a worker's outcome is not raised here: the notifications and panes say it.
    """
    await workers_done(app)
    # The screen hears of the worker's end by a message of its own.
    await until(lambda: all(screen.running is None for screen in app.main_screens()))
    await drained(app)


async def workers_done(app: MiglabApp) -> None:
    """Every worker has ended, however (a stopped action may raise)."""
    await asyncio.gather(*(worker.wait() for worker in list(app.workers)), return_exceptions=True)


def palette_offers(app: MiglabApp, words: str) -> bool:
    """The command palette is up and its first hit is the command ``words`` names."""
    palette = app.screen
    if not isinstance(palette, CommandPalette):
        return False
    hits = palette.query_one(CommandList)
    return hits.option_count > 0 and words in str(hits.get_option_at_index(0).prompt)


async def choose(app: MiglabApp, pilot: Any, ident: str) -> None:
    """Pick ``ident`` in the chooser, once it is on screen."""
    await until(lambda: isinstance(app.screen, Choice))
    choice = app.screen
    assert isinstance(choice, Choice)
    idents = [i for i, _ in choice.options]
    assert ident in idents, idents
    choice.query_one(OptionList).highlighted = idents.index(ident)
    await pilot.press("enter")


async def prepare_and_boot(app: MiglabApp, pilot: Any, lab: FlowLab) -> None:
    first = main_screen(app).backend.layout.hypervisor_hosts[0]
    await pilot.press("p")
    await finish_actions(app)
    await pilot.press("b")
    await pilot.pause()
    await choose(app, pilot, first)
    await finish_actions(app)
    await lab.booted()


async def start_migrate_ping(app: MiglabApp, pilot: Any, backend: Any) -> None:
    """r, migrate-ping; return once it runs and its ping is in flight."""
    await pilot.press("r")
    await pilot.pause()
    await choose(app, pilot, "migrate-ping")
    screen = main_screen(app)
    await until(lambda: screen.running == "migrate-ping" and backend.scenario_running)
    await until(
        lambda: (
            isinstance(backend, ScriptedBackend)
            or (  # the scenario's own ping: started in its baseline (the session's pauses)
                screen.state.phase == "baseline"
                and any(
                    c.argv[0] == "ping" and not c.finished for c in screen.state.commands.values()
                )
            )
        )
    )


async def test_p_b_m_moves_the_guest_and_logs_everything(flow_backend: FlowLab) -> None:
    expect = flow_backend.expect
    backend = flow_backend()
    first, second = backend.layout.hypervisor_hosts
    async with running(backend) as (app, pilot):
        screen = main_screen(app)
        status = text(screen.query_one(StatusBar))
        assert "SIMULATED" in status and "READ-ONLY" not in status and "REPLAY" not in status
        assert not exported(app)
        await pilot.press("p")
        await finish_actions(app)
        assert exported(app)
        await pilot.press("b")
        await pilot.pause()
        choice = app.screen
        assert isinstance(choice, Choice)
        assert [ident for ident, _ in choice.options] == [first, second]
        await pilot.press("enter")
        await finish_actions(app)
        assert f"on {first}" in text(screen.query_one(GuestPane))
        await flow_backend.booted()
        await pilot.press("m")
        await finish_actions(app)
        assert f"on {second}" in text(screen.query_one(GuestPane))
        guest = backend.layout.guest
        assert f"migrated {guest} {first} → {second}" in text(screen.query_one(MigrationBar))
        commands = [row[4] for row in rows(app)]
        assert any(c.startswith(expect.export) for c in commands)
        assert any(c.startswith("iscsiadm -m node") and c.endswith("--login") for c in commands)
        assert any(c.startswith(expect.boot) for c in commands)
        assert expect.migrate in commands
        assert backend.calls == ["prepare", f"boot {first}", f"migrate {second}"]
        await quit_console(app, pilot)
    assert backend.calls[-1] == "close"
    session = read_session(backend.session_log)
    kinds = {event.kind for event in session.events}
    assert {"storage.exported", "initiator.session", "domain.state"} <= kinds
    assert {"command.started", "command.finished", "migration.finished"} <= kinds
    finished = session.of_kind("migration.finished")[-1]
    assert finished.dest == second and finished.ok  # type: ignore[attr-defined]
    assert session.end is not None and session.end["status"] == "ok"


async def test_r_runs_migrate_ping_to_the_end(flow_backend: FlowLab) -> None:
    expect = flow_backend.expect
    backend = flow_backend()
    second = backend.layout.hypervisor_hosts[1]
    async with running(backend) as (app, pilot):
        shown = kept_toasts(app)
        await prepare_and_boot(app, pilot, flow_backend)
        await pilot.press("r")
        await pilot.pause()
        await choose(app, pilot, "migrate-ping")
        await finish_actions(app)
        screen = main_screen(app)
        assert screen.running is None
        assert screen.state.phase == "after"
        assert f"on {second}" in text(screen.query_one(GuestPane))
        assert set(screen.query_one(TraceGrid).plots) == expect.traces
        assert any("migrate-ping done" in message for message in shown), shown
        await quit_console(app, pilot)
    session = read_session(backend.session_log)
    assert session.of_kind("phase")[-1].name == "after"  # type: ignore[attr-defined]
    assert len(session.of_kind("sample")) > expect.min_samples
    finished = session.of_kind("migration.finished")[-1]
    assert finished.dest == second and finished.ok  # type: ignore[attr-defined]


async def test_x_asks_with_the_exact_commands_and_cancels_on_yes(flow_backend: FlowLab) -> None:
    expect = flow_backend.expect
    backend = flow_backend(hold_scenario=True)
    async with running(backend) as (app, pilot):
        await prepare_and_boot(app, pilot, flow_backend)
        await start_migrate_ping(app, pilot, backend)
        screen = main_screen(app)
        await pilot.press("x")
        asked = await dialog(app, pilot)
        assert expect.cancel_lists in text(asked.query_one("#command-list"))
        await pilot.press("n")
        await pilot.pause()
        assert "cancel" not in backend.calls and backend.scenario_running
        await pilot.press("x")
        await dialog(app, pilot)
        await pilot.press("y")
        await finish_actions(app)
        assert "cancel" in backend.calls and not backend.scenario_running
        assert screen.running is None
        assert expect.cleanup_logged(rows(app))
        await quit_console(app, pilot)


async def test_q_while_running_stops_the_scenario_then_saves_the_log(
    flow_backend: FlowLab,
) -> None:
    expect = flow_backend.expect
    backend = flow_backend(hold_scenario=True)
    async with running(backend) as (app, pilot):
        await prepare_and_boot(app, pilot, flow_backend)
        await start_migrate_ping(app, pilot, backend)
        await pilot.press("q")
        asked = await dialog(app, pilot)
        assert "migrate-ping is running" in asked.question
        assert app.focused is not None and app.focused.id == "no"
        await pilot.press("y")
        await workers_done(app)  # the quit: nothing is drawn after it
    assert backend.calls[-2:] == ["cancel", "close"]  # stopped first, then closed
    assert not backend.scenario_running
    session = read_session(backend.session_log)
    assert session.end is not None
    notes = [e.text for e in session.of_kind("note")]  # type: ignore[attr-defined]
    assert "migrate-ping cancelled; probes stopped" in notes
    assert expect.stopped_cleanly(session)


async def test_a_failed_operation_names_host_command_and_stderr(flow_backend: FlowLab) -> None:
    backend = flow_backend(broken_login=True)
    async with running(backend) as (app, pilot):
        await pilot.press("p")
        await finish_actions(app)
        errors = [n for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1
        message = errors[0].message
        assert any(host in message for host in backend.layout.hypervisor_hosts)
        assert "`iscsiadm -m node" in message and "--login`" in message
        assert flow_backend.expect.login_stderr in message
        assert errors[0].title == "prepare failed"
        assert main_screen(app).running is None


async def test_the_key_bar_of_a_live_lab_has_the_lab_keys(flow_backend: FlowLab) -> None:
    async with running(flow_backend(), size=(160, 40)) as (app, _pilot):
        bar = str(main_screen(app).query_one(KeyBar).render())
        for shown in ("p prepare", "b boot", "m migrate", "r run", "x cancel", "q quit"):
            assert shown in bar
        assert "space pause" not in bar


async def test_readonly_console_refuses_host_changing_keys(flow_backend: FlowLab) -> None:
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


async def test_s_shuts_the_guest_down_after_showing_the_command(flow_backend: FlowLab) -> None:
    backend = flow_backend()
    first = backend.layout.hypervisor_hosts[0]
    async with running(backend) as (app, pilot):
        await prepare_and_boot(app, pilot, flow_backend)
        await pilot.press("s")
        listed = text((await dialog(app, pilot)).query_one("#command-list"))
        assert f"on {first}:" in listed and flow_backend.expect.shutdown_lists in listed
        await pilot.press("y")
        await finish_actions(app)
        assert backend.calls[-1] == f"shutdown {first}"


async def test_unexport_from_the_palette_asks_first(flow_backend: FlowLab) -> None:
    backend = flow_backend()
    storage = backend.layout.storage_host
    async with running(backend) as (app, pilot):
        await pilot.press("p")
        await finish_actions(app)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"unexport")
        await until(lambda: palette_offers(app, "unexport"))  # the search runs in a worker
        await pilot.press("enter")
        listed = text((await dialog(app, pilot)).query_one("#command-list"))
        assert f"on {storage}:" in listed
        assert flow_backend.expect.unexport_lists in listed
        assert app.focused is not None and app.focused.id == "no"
        await pilot.press("enter")  # No
        await finish_actions(app)
        assert "unexport" not in backend.calls
        assert exported(app)


async def test_by_hand_the_console_pings_and_measures_what_the_network_saw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """p, b, m and no scenario: the guest pane shows its RTT, the migration line the
    unreachable time the console's own ping measured, the log a matching event, and the
    poller's looks stay out of the command pane."""
    bound_textual_idle_wait(monkeypatch)
    log = tmp_path / "session.jsonl"
    async with simulated_lab() as sim:
        backend = sim_backend(sim, log)
        first, second = backend.layout.hypervisor_hosts
        async with running(backend) as (app, pilot):
            screen = main_screen(app)
            await pilot.press("p")
            await finish_actions(app)
            await pilot.press("b")
            await pilot.pause()
            await choose(app, pilot, first)
            await finish_actions(app)
            guest = screen.query_one(GuestPane)
            await until(lambda: "● reachable" in text(guest))
            await pilot.press("m")
            await finish_actions(app)
            bar = screen.query_one(MigrationBar)
            await until(lambda: screen.state.migration.measured is not None)
            measured = screen.state.migration.measured
            assert measured is not None and measured.unreachable_s is not None
            await until(lambda: measured.network_text() in text(bar))
            assert f"migrated {backend.layout.guest} {first} → {second}" in text(bar)
            assert "x the memory/link limit" in text(bar)
            polls = [c for c in screen.state.commands.values() if c.poll]
            assert polls  # the poller looked meanwhile ...
            shown = screen.query_one(CommandLog)._rows
            assert not any(c.cmd_id in shown for c in polls)  # ... out of the pane
            await quit_console(app, pilot)
    [logged] = read_session(log).of_kind("migration.measured")
    assert logged == measured
