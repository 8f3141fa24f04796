"""Strings from files and hosts are shown as text: never parsed as markup, never escapes.

A lab name, a host's output, an error or a note that holds ``[``, ``[bold]`` or ``[/]``
is shown exactly as it reads (Textual markup would restyle it or raise MarkupError), and
a host's ESC or BEL shows as ␛ or ␇ instead of reaching the terminal (an OSC could set
the window title, ``ESC[2J`` clear the screen).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from textual.content import Content
from textual.notifications import Notification
from textual.pilot import Pilot

from backend.events import Event, MigrationFinished, Note, Phase
from backend.session import SessionLogWriter, make_header
from tests.tui import session_fixture
from tests.tui.conftest import main_screen, settle, started
from tests.tui.sim_backend import bound_textual_idle_wait, sim_backend, simulated_lab
from tui.app import MiglabApp
from tui.backend_api import ConsoleBackend, ScenarioInfo
from tui.replay import ReplayBackend
from tui.screens.confirm import ConfirmScreen
from tui.screens.output import CommandOutputScreen
from tui.screens.pickers import scenario_choice
from tui.widgets.command_log import CommandLog
from tui.widgets.migration import MigrationBar
from tui.widgets.panes import HostPane
from tui.widgets.safe_text import clean
from tui.widgets.status import StatusBar

LAB_NAME = "lab a[b] [bold]x[/]"
OSC_TITLE = "\x1b]0;pwned\x07"  # would set the terminal's title
CLEAR = "\x1b[2J"  # would clear the screen
HOSTILE = f"[/] [bold red]boom[/] [$accent]{CLEAR}{OSC_TITLE} a\\"
SHOWN_HOSTILE = "[/] [bold red]boom[/] [$accent]␛[2J␛]0;pwned␇ a\\"
T_AFTER = session_fixture.T0 + 70.0


@asynccontextmanager
async def running(backend: ConsoleBackend) -> AsyncIterator[tuple[MiglabApp, Pilot[int]]]:
    """The console on ``backend``, with its notifications shown (run_test hides them)."""
    app = MiglabApp(backend)
    shown: list[Notification] = []
    add = app._notifications.add

    def record(notification: Notification) -> Any:
        shown.append(notification)  # kept: a toast may expire before the test looks
        return add(notification)

    app._notifications.add = record  # type: ignore[method-assign]
    app.shown = shown  # type: ignore[attr-defined]
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.pause()
        await started(app)
        yield app, pilot


def text(widget: Any) -> str:
    return str(widget.render())


def terminal_output(app: MiglabApp) -> str:
    """What the terminal would be sent for the whole screen now (styles and all)."""
    update = app.screen._compositor.render_full_update()
    return str(update.render_segments(app.console))


def assert_no_injected_escape(app: MiglabApp) -> None:
    out = terminal_output(app)
    assert "\x07" not in out
    assert "\x1b]0;" not in out
    assert CLEAR not in out


def hostile_events() -> list[Event]:
    timeline = session_fixture.Timeline()
    timeline._ids = itertools.count(10_000)  # after the session's own commands
    events: list[Event] = session_fixture.full_session()
    events += timeline.command(
        T_AFTER,
        "qemu1",
        ["echo", HOSTILE, "[b]"],
        exit_status=1,
        stdout=(HOSTILE, "\x1b[31mred\x1b[0m \x07bell [i]x"),
        stderr=(f"err {HOSTILE}",),
        failure=f"failed {HOSTILE}",
    )
    events += [
        Phase(t=T_AFTER + 1, name=f"phase {HOSTILE}"),
        Note(t=T_AFTER + 2, level="warning", text=f"note {HOSTILE}"),
        MigrationFinished(
            t=T_AFTER + 3,
            domain="guest",
            source="qemu2",
            dest="qemu1",
            ok=False,
            error=f"refused {HOSTILE}",
        ),
    ]
    return events


async def write_hostile_log(path: Path) -> Path:
    lab = session_fixture.lab().model_dump(mode="json")
    lab["lab"]["name"] = f"{LAB_NAME} {OSC_TITLE}"
    header = make_header(lab=lab, lab_file="lab [x].toml", scenario=f"s{HOSTILE}")
    header["t"] = session_fixture.T0
    writer = await SessionLogWriter.create(path, header)
    for event in hostile_events():
        writer.write(event)
    await writer.close()
    return path


async def test_a_replayed_log_with_markup_and_escapes_is_shown_literally(tmp_path: Path) -> None:
    log = await write_hostile_log(tmp_path / "hostile [b].jsonl")
    backend = ReplayBackend.open(log, speed=0.0)
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        screen = main_screen(app)
        status = text(screen.query_one(StatusBar))
        assert f"miglab {LAB_NAME} ␛]0;pwned␇" in status
        assert f"phase phase {SHOWN_HOSTILE}" in status
        bar = text(screen.query_one(MigrationBar))
        assert f"refused {SHOWN_HOSTILE}" in bar
        # What a toast shows: its text as text (a toast parses markup unless told not to).
        toasts = [
            (Content.from_markup(n.message) if n.markup else Content(n.message)).plain
            for n in app.shown  # type: ignore[attr-defined]
        ]
        assert f"note {SHOWN_HOSTILE}" in toasts, toasts
        assert_no_injected_escape(app)

        table = screen.query_one(CommandLog).table
        last = [str(cell) for cell in table.get_row_at(table.row_count - 1)]
        assert last[1] == "qemu1" and SHOWN_HOSTILE in last[4], last
        table.focus()
        table.move_cursor(row=table.row_count - 1)
        await pilot.press("enter")
        await pilot.pause()
        output = app.screen
        assert isinstance(output, CommandOutputScreen)
        header = text(output.query_one("#header"))
        assert SHOWN_HOSTILE in header and f"failed {SHOWN_HOSTILE}" in header
        lines = [str(line.text) for line in output.query_one("#output").lines]  # type: ignore[attr-defined]
        assert f"  {SHOWN_HOSTILE}" in lines
        assert "  ␛[31mred␛[0m ␇bell [i]x" in lines
        assert f"! err {SHOWN_HOSTILE}" in lines
        assert_no_injected_escape(app)
        await pilot.press("escape")


async def test_a_live_lab_named_with_markup_shows_host_output_literally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulated lab, named with markup; a host prints ESC and BEL and markup."""
    bound_textual_idle_wait(monkeypatch)
    async with simulated_lab() as sim:
        named = sim.lab_config.model_copy(
            update={"lab": sim.lab_config.lab.model_copy(update={"name": LAB_NAME})}
        )
        monkeypatch.setattr(sim, "lab_config", named)
        backend = sim_backend(sim, tmp_path / "console [b].jsonl")
        async with running(backend) as (app, pilot):
            screen = main_screen(app)
            assert text(screen.query_one(StatusBar)).startswith(f"miglab {LAB_NAME} ")
            host = backend.layout.hypervisor_hosts[0]
            # A command on the host, through the console's own connection to it: its
            # events go host -> transport -> bus -> console, as every command's do.
            result = await backend.inner._hosts[host].run(["echo", HOSTILE], timeout=30)
            assert result.stdout == HOSTILE + "\n"
            table = screen.query_one(CommandLog).table
            for _ in range(400):
                await pilot.pause()
                rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
                if any(SHOWN_HOSTILE in row[4] and row[2] == "exit 0" for row in rows):
                    break
            else:
                raise AssertionError(f"the echo never showed in the command log: {rows}")
            assert text(screen.query_one(HostPane)).strip()
            assert_no_injected_escape(app)
            table.focus()
            index = next(i for i, row in enumerate(rows) if SHOWN_HOSTILE in row[4])
            table.move_cursor(row=index)
            await pilot.press("enter")
            await pilot.pause()
            output = app.screen
            assert isinstance(output, CommandOutputScreen)
            lines = [str(line.text) for line in output.query_one("#output").lines]  # type: ignore[attr-defined]
            assert f"  {SHOWN_HOSTILE}" in lines
            assert_no_injected_escape(app)
            await pilot.press("escape")


async def test_dialogs_and_pickers_show_file_strings_as_text(tmp_path: Path) -> None:
    from backend.drivers.base import HostCommand

    log = await write_hostile_log(tmp_path / "s.jsonl")
    backend = ReplayBackend.open(log, speed=0.0)
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        confirm = ConfirmScreen(
            f"Stop {HOSTILE}?",
            f"question {HOSTILE}",
            [HostCommand(f"host{HOSTILE}", ("rm", HOSTILE))],
        )
        await app.push_screen(confirm)
        await pilot.pause()
        assert f"question {SHOWN_HOSTILE}" in text(confirm.query_one("#question"))
        commands = text(confirm.query_one("#command-list"))
        assert f"on host{SHOWN_HOSTILE}:" in commands
        assert_no_injected_escape(app)
        confirm.dismiss(False)
        await pilot.pause()

        picker = scenario_choice(
            [ScenarioInfo(f"id{HOSTILE}", f"title {HOSTILE}", f"about {HOSTILE}")]
        )
        await app.push_screen(picker)
        await pilot.pause()
        option = picker.query_one("OptionList").get_option_at_index(0)  # type: ignore[attr-defined]
        prompt = str(option.prompt.plain if hasattr(option.prompt, "plain") else option.prompt)
        assert f"id{SHOWN_HOSTILE}  title {SHOWN_HOSTILE}" in prompt
        assert_no_injected_escape(app)
        picker.dismiss(None)


def test_clean_makes_every_control_character_visible() -> None:
    assert clean("a\x1b[31mb\x07\x00\x7f\x9b\u202e") == "a␛[31mb␇␀␡\ufffd\ufffd"
    assert clean("one\ntwo\tthree") == "one␊two three"
    assert clean("one\ntwo\tthree", lines=True) == "one\ntwo\tthree"
    assert clean("[b]x[/] \\") == "[b]x[/] \\"
