"""Pilot tests: the console replaying a recorded migrate-ping session.

The same screen shows a live lab; here its events come from a session log, which
is the console's own input format, so every pane is driven exactly as in a run.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from textual.binding import Binding
from textual.widgets import Button

from backend.drivers.base import HostCommand
from backend.events import CommandFinished, CommandStarted
from tests.support.waiting import until
from tests.tui.conftest import main_screen, running, settle
from tests.tui.test_flows import kept_toasts
from tui import keys
from tui.replay import ReplayBackend
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.main import EventsArrived, MainScreen
from tui.screens.output import CommandOutputScreen
from tui.widgets import fmt
from tui.widgets.command_log import COMMAND_WIDTH, CommandLog
from tui.widgets.keybar import KeyBar
from tui.widgets.migration import MigrationBar
from tui.widgets.panes import GuestPane, HostPane, StoragePane
from tui.widgets.plot import TraceGrid
from tui.widgets.status import StatusBar

Replay = Callable[..., ReplayBackend]


def text(widget: object) -> str:
    """What a Static shows, as plain text."""
    return str(widget.render())  # type: ignore[attr-defined]


async def test_panes_show_the_session_after_the_migration(replay: Replay) -> None:
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        screen = main_screen(app)
        guest = text(screen.query_one(GuestPane))
        assert "on qemu2" in guest
        assert "reachable" in guest and "unreachable" not in guest
        assert "lost 4" in guest  # the four pings lost in the stop-and-copy
        host1, host2 = screen.query(HostPane)
        assert host2.has_class("-guest-here") and not host1.has_class("-guest-here")
        assert "guest running" in text(host2)
        assert "guest" not in text(host1).split("\n", 1)[1]  # no domain left on qemu1
        assert "2995/4063 MB free" in text(host1)  # from the host.resources event
        for pane in (host1, host2):
            assert "iscsi logged-in" in text(pane)
            assert pane.has_class("-connected")
        storage = text(screen.query_one(StoragePane))
        assert "exported" in storage and "qemu1, qemu2" in storage
        bar = text(screen.query_one(MigrationBar))
        assert "migrated guest qemu1 → qemu2" in bar
        assert "downtime 6 ms" in bar and "in 7.5 s" in bar


async def test_status_bar_names_lab_replay_log_and_time(replay: Replay) -> None:
    backend = replay()
    async with running(backend, size=(200, 40)) as (app, pilot):
        await settle(pilot, backend)
        status = text(main_screen(app).query_one(StatusBar))
        assert "miglab sandbox" in status
        assert "REPLAY max end" in status
        assert "phase after" in status
        assert str(backend.session_log) in status
        assert "0:00:58" in status  # the session's length: replay time, not wall time


async def test_command_log_lists_every_command(replay: Replay) -> None:
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        log = main_screen(app).query_one(CommandLog)
        table = log.table
        started = [e for e in backend.session.events if isinstance(e, CommandStarted)]
        assert table.row_count == len(started) == 12
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        for row, event in zip(rows, started, strict=True):
            assert row[1] == event.host
            assert row[4] == fmt.ellipsize(shlex.join(event.argv), COMMAND_WIDTH)
        assert rows[4][2] == "exit 21"  # iscsiadm -m session before any login
        assert all(row[2] == "exit 0" for i, row in enumerate(rows) if i not in (4, 7))
        assert table.cursor_row == table.row_count - 1  # it follows the tail


async def test_plots_are_drawn_from_the_samples(replay: Replay) -> None:
    backend = replay()
    async with running(backend, size=(160, 48)) as (app, pilot):
        await settle(pilot, backend)
        grid = main_screen(app).query_one(TraceGrid)
        assert set(grid.plots) == {("ping", "storage"), ("sysbench-cpu", "guest")}
        ping = grid.plots[("ping", "storage")]
        assert ping.renders > 0
        assert ping.plot_title.startswith("ping RTT") and "lost 4" in ping.plot_title
        drawn = "\n".join("".join(s.text for s in line) for line in ping._lines)
        assert any("\u2800" <= ch <= "\u28ff" for ch in drawn)  # braille: the trace itself
        assert "x" in drawn  # the losses are marked
        assert "lost 4" in drawn


async def test_enter_shows_the_full_output_of_a_command(replay: Replay) -> None:
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        log = main_screen(app).query_one(CommandLog)
        log.table.focus()
        log.table.move_cursor(row=4)  # iscsiadm -m session, exit 21
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, CommandOutputScreen)
        lines = [str(line.text) for line in app.screen.query_one("#output").lines]  # type: ignore[attr-defined]
        assert any("iscsiadm: No active sessions." in line for line in lines)
        header = text(app.screen.query_one("#header"))
        assert "iscsiadm -m session" in header and "exit 21" in header
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_log_pauses_when_scrolled_up_and_counts_new_commands(replay: Replay) -> None:
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        screen = main_screen(app)
        log = screen.query_one(CommandLog)
        log.table.focus()
        await pilot.press("up", "up")
        assert not log.following
        t = backend.session.events[-1].t
        new = [
            CommandStarted(t=t + i, host="qemu2", cmd_id=900 + i, argv=["true"]) for i in range(3)
        ]
        screen.post_message(EventsArrived(list(new)))
        await pilot.pause()
        assert log.table.row_count == 15
        assert log.waiting == 3 and "3 new" in str(log.border_subtitle)
        assert log.table.cursor_row == 9  # it stayed where the user put it
        await pilot.press("end")
        await pilot.pause()
        assert log.following and log.waiting == 0 and not log.border_subtitle
        assert log.table.cursor_row == 14


async def test_l_toggles_the_command_log(replay: Replay) -> None:
    async with running(replay()) as (app, pilot):
        log = main_screen(app).query_one(CommandLog)
        assert log.display
        await pilot.press("l")
        assert not log.display
        await pilot.press("l")
        assert log.display


async def test_t_cycles_the_themes(replay: Replay) -> None:
    async with running(replay()) as (app, pilot):
        seen = [app.theme]
        for _ in range(3):
            await pilot.press("t")
            seen.append(app.theme)
        assert seen == ["miglab-dark", "miglab-light", "miglab-high-contrast", "miglab-dark"]
        assert app.has_class("-theme-miglab-dark")


async def test_help_lists_every_key_of_the_registry(replay: Replay) -> None:
    async with running(replay(), size=(120, 60)) as (app, pilot):
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        shown = text(app.screen.query_one("#help-text"))
        for key in keys.KEYS:
            assert key.help in shown
            if key.key is not None:
                assert key.shown_key in shown
        assert "disabled: replay" in shown
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_footer_and_bindings_come_from_the_registry(replay: Replay) -> None:
    async with running(replay()) as (app, _pilot):
        generated = {b.id for b in [*MainScreen.BINDINGS, *app.BINDINGS] if isinstance(b, Binding)}
        registry = {key.id for key in keys.KEYS if key.key is not None and key.binding}
        assert registry <= generated
        active = app.screen.active_bindings
        for key in keys.KEYS:
            if key.key is None or not key.binding:
                continue
            if key.action == "close_replay":  # only on a replay opened over the live lab
                assert key.key not in active
                continue
            assert active[key.key].binding.id == key.id
        # The key bar: the footer keys; in a replay without the host-changing ones,
        # with the replay's own keys instead.
        bar = text(app.screen.query_one(KeyBar))
        for key in keys.KEYS:
            shown = f"{key.shown_key} {key.label}"
            if key.footer and not key.changes_host:
                assert shown in bar
            if key.changes_host:
                assert shown not in bar
        assert "space pause" in bar and "+ faster" in bar and "- slower" in bar
        # the palette offers the same commands
        from tui.screens.palette import KeysProvider

        provider = KeysProvider(app.screen)
        labels = [hit.display async for hit in provider.discover()]
        assert "migrate" in labels and "prepare" in labels and "theme" in labels


async def test_host_changing_keys_are_refused_in_a_replay(replay: Replay) -> None:
    async with running(replay()) as (app, pilot):
        screen = main_screen(app)
        messages = kept_toasts(app)  # each one, though only the newest few stay up
        for key in ("p", "b", "m", "r", "x", "s"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is screen  # no picker, no dialog opened
            assert screen.running is None
        assert len(messages) == 6
        assert all("disabled: this is a replay" in m for m in messages)


async def test_confirm_dialog_shows_exact_commands_with_focus_on_no(replay: Replay) -> None:
    commands = [
        HostCommand(
            "qemu1", ("iscsiadm", "-m", "node", "-T", "iqn.2024-01.lab.storage:disk1", "--logout")
        ),
        HostCommand(
            "storage",
            ("tgtadm", "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1"),
        ),
    ]
    async with running(replay()) as (app, pilot):
        answers: list[bool | None] = []
        dialog = ConfirmScreen("Remove the export?", "Hosts logged in lose the disk.", commands)
        await app.push_screen(dialog, answers.append)
        await pilot.pause()
        assert isinstance(app.focused, Button) and app.focused.id == "no"
        listed = text(dialog.query_one("#command-list"))
        assert "on qemu1:" in listed and "on storage:" in listed
        for command in commands:
            assert shlex.join(command.argv) in listed
        await pilot.press("enter")  # on No
        assert answers == [False]
        dialog = ConfirmScreen("Remove the export?", "again", commands)
        await app.push_screen(dialog, answers.append)
        await pilot.press("y")
        assert answers == [False, True]


async def test_replay_keys_pause_and_change_speed(replay: Replay) -> None:
    backend = replay(speed=1.0)
    async with running(backend) as (app, pilot):
        screen = main_screen(app)
        await pilot.press("space")
        assert backend.paused
        published = backend.published
        await pilot.pause(0.2)
        assert backend.published == published  # nothing moves while paused
        assert "paused" in text(screen.query_one(StatusBar))
        await pilot.press("plus", "plus")
        assert backend.speed == 4.0
        await pilot.press("minus")
        assert backend.speed == 2.0
        await pilot.press("space")
        assert not backend.paused


async def test_o_opens_another_log_over_the_console_and_escape_closes_it(replay: Replay) -> None:
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        base = main_screen(app)
        await pilot.press("o")
        await until(lambda: app.screen is not base)  # the path prompt
        await pilot.pause()
        await pilot.press("enter")  # the suggested path: this session's own log
        await until(lambda: isinstance(app.screen, MainScreen) and app.screen is not base)
        overlay = main_screen(app)
        assert overlay is not base and overlay.overlay
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is base


async def test_o_with_an_unreadable_log_says_why(replay: Replay, tmp_path: object) -> None:
    async with running(replay()) as (app, pilot):
        base = main_screen(app)
        await pilot.press("o")
        await until(lambda: app.screen is not base)  # the path prompt
        await pilot.pause()
        app.screen.query_one("#path").value = "/nonexistent/session.jsonl"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await until(lambda: app._notifications)  # the log is read in a worker
        assert app.screen is base
        messages = [n.message for n in app._notifications]
        assert any("/nonexistent/session.jsonl" in m and "cannot read" in m for m in messages)


async def test_no_color_starts_monochrome_and_high_contrast(
    replay: Replay, monkeypatch: object
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")  # type: ignore[attr-defined]
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        assert app.no_color
        assert app.theme == "miglab-high-contrast"
        grid = main_screen(app).query_one(TraceGrid)
        for plot in grid.plots.values():
            assert plot.plot_colors.line is None and plot.plot_colors.loss is None
            assert plot.renders > 0


async def test_a_host_that_drops_shows_disconnected_then_connected(replay: Replay) -> None:
    from backend.events import HostState

    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        screen = main_screen(app)
        host1 = next(p for p in screen.query(HostPane) if p.host == "qemu1")
        t = backend.session.events[-1].t
        lost = HostState(t=t + 1, host="qemu1", state="disconnected", reason="keepalive timeout")
        screen.post_message(EventsArrived([lost]))
        await pilot.pause()
        assert host1.has_class("-disconnected") and not host1.has_class("-connected")
        assert "disconnected keepalive timeout" in text(host1)
        back = HostState(t=t + 3, host="qemu1", state="connected", rtt_ms=0.7)
        screen.post_message(EventsArrived([back]))
        await pilot.pause()
        assert host1.has_class("-connected") and "connected 0.7ms" in text(host1)


async def test_the_migration_bar_shows_what_the_hypervisor_reports(replay: Replay) -> None:
    from backend.events import MigrationProgress

    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        screen = main_screen(app)
        t = backend.session.events[-1].t
        progress = MigrationProgress(
            t=t + 1, domain="guest", source="qemu2", dest="qemu1", iteration=2,
            transferred_bytes=200 * 2**20, remaining_bytes=64 * 2**20, total_bytes=256 * 2**20,
            mbps=94.2, expected_downtime_ms=300,
        )  # fmt: skip
        screen.post_message(EventsArrived([progress]))
        await pilot.pause()
        bar = text(screen.query_one(MigrationBar))
        assert "migrating guest qemu2 → qemu1" in bar
        for part in ("iter 2", "200 MiB/256 MiB", "left 64.0 MiB", "94.2 Mbit/s", "75%"):
            assert part in bar
        xen_like = MigrationProgress(t=t + 2, domain="guest", source="qemu2", dest="qemu1")
        screen.state.migration.total_bytes = None  # Xen's xl reports no byte counts
        screen.post_message(EventsArrived([xen_like]))
        await pilot.pause()
        assert "%" not in text(screen.query_one(MigrationBar))


async def test_a_status_that_grows_when_the_command_ends_is_shown_whole(replay: Replay) -> None:
    # A row is added as "running" (7 cells); "cancelled" and "connection lost" are longer.
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        screen = main_screen(app)
        log = screen.query_one(CommandLog)
        t = backend.session.events[-1].t
        argv = ["xl", "-v", "migrate", "guest", "qemu2"]
        started = [CommandStarted(t=t, host="qemu1", cmd_id=900 + i, argv=argv) for i in (0, 1)]
        screen.post_message(EventsArrived(list(started)))
        await pilot.pause()
        ends = [
            CommandFinished(
                t=t + 1, host="qemu1", cmd_id=900, argv=argv, exit_status=None,
                duration_s=1.0, failure="cancelled",
            ),
            CommandFinished(
                t=t + 2, host="qemu1", cmd_id=901, argv=argv, exit_status=None,
                duration_s=2.0, failure="connection lost: reset by peer",
            ),
        ]  # fmt: skip
        screen.post_message(EventsArrived(list(ends)))
        await until(lambda: "connection lost" in str(log.table.get_cell("901", "status")))
        assert log.table.column_width("status") >= len("connection lost")
        assert str(log.table.get_cell("900", "status")) == "cancelled"


async def test_polls_stay_out_of_the_command_log_until_shift_l(replay: Replay) -> None:
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        screen = main_screen(app)
        log = screen.query_one(CommandLog)
        rows = log.table.row_count
        t = backend.session.events[-1].t
        looks = [
            CommandStarted(t=t + 1, host="qemu1", cmd_id=900, argv=["xl", "list"], poll=True),
            CommandStarted(t=t + 2, host="qemu1", cmd_id=901, argv=["xl", "migrate"]),
            CommandStarted(t=t + 3, host="storage", cmd_id=902, argv=["tgtadm"], poll=True),
        ]
        screen.post_message(EventsArrived(list(looks)))
        await until(lambda: log.table.row_count == rows + 1)
        assert 901 in log._rows and 900 not in log._rows
        await pilot.press("L")
        await until(lambda: log.table.row_count == rows + 3)
        assert log.border_title == "commands and polls" and log.following
        assert log.table.cursor_row == log.table.row_count - 1
        await pilot.press("L")
        await until(lambda: log.table.row_count == rows + 1)
        assert log.border_title == "commands"
