"""The main screen: four panes, live traces, the migration bar, the command log.

It is bound to one :class:`~tui.backend_api.ConsoleBackend`. Events from the
backend are buffered and delivered to the screen as one :class:`EventsArrived`
message per batch (at most :data:`FLUSH_S` apart while they pour in), folded into
a :class:`~tui.widgets.lab_state.LabState`, and only the panes they changed are
redrawn. The keys that change hosts live in :mod:`tui.screens.actions`; here are the
layout, the event stream, and the keys that only change the view.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message

from backend.events import Event
from backend.session import Session, SessionLogError, read_session
from tui import keys
from tui.backend_api import ConsoleBackend, PingControls, ReplayControls
from tui.screens.actions import ActionScreen
from tui.screens.help import HelpScreen
from tui.screens.output import CommandOutputScreen
from tui.screens.pickers import OpenLog
from tui.widgets.command_log import CommandLog
from tui.widgets.keybar import KeyBar
from tui.widgets.lab_state import Changes
from tui.widgets.migration import MigrationBar
from tui.widgets.panes import GuestPane, HostPane, StoragePane
from tui.widgets.plot import TraceGrid
from tui.widgets.status import StatusBar, StatusInfo

FLUSH_S = 0.05
"""Events are handed to the screen at most this often (20 batches a second)."""

GUEST_VALUES_S = 0.25
"""The guest pane's probe values change with every sample; they are redrawn this often."""

_NOTE_SEVERITY = {"info": "information", "warning": "warning", "error": "error"}
_SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 0.0)
_PING_INTERVALS: tuple[float | None, ...] = (0.1, 0.2, 0.5, 1.0, None)
"""What the key i cycles through: the console's ping of the guest, in seconds (None: off)."""


class EventsArrived(Message):
    """A batch of backend events, in the order they were published."""

    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events


class MainScreen(ActionScreen):
    """One lab (live, simulated or replayed) on one screen."""

    BLANK = True  # its widgets cover it: its background is one line, not 48 drawn alike

    BINDINGS: ClassVar = keys.bindings()
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012 (Textual's type)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # noqa: RUF012

    DEFAULT_CSS = """
    MainScreen {
        layout: vertical;
    }
    MainScreen #panes {
        height: 6;
    }
    MainScreen.-tall #panes {
        height: 8;
    }
    MainScreen #panes > .pane {
        width: 1fr;
        height: 100%;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    MainScreen #traces {
        min-height: 4;
    }
    MainScreen #log {
        height: 7;
    }
    MainScreen.-tall #log {
        height: 30%;
    }
    MainScreen.-narrow #panes > .pane {
        padding: 0 0;
    }
    """

    def __init__(self, backend: ConsoleBackend, *, overlay: bool = False) -> None:
        super().__init__(backend)
        self.overlay = overlay
        """A replay opened over the live lab (``o``); escape closes it."""
        self._pending: list[Event] = []
        self._flush_scheduled = False
        self._last_flush = 0.0
        self._detached = False
        self._guest_shown_on: str | None = None
        self._guest_seen: tuple[str | None, bool | None] = (None, None)
        self._guest_values_dirty = False
        self._output_open = False

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        layout = self.backend.layout
        first, second = layout.hypervisor_hosts
        yield StatusBar(id="status")
        with Horizontal(id="panes"):
            yield StoragePane(layout.storage_host, id="pane-storage")
            yield HostPane(first, id="pane-host1")
            yield HostPane(second, id="pane-host2")
            yield GuestPane(layout.guest, id="pane-guest")
        yield MigrationBar(id="migration")
        yield TraceGrid(self.state, self.backend.clock, id="traces")
        yield CommandLog(id="log")
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.query_one(CommandLog).set_origin(self.state.t0)
        self.query_one(KeyBar).show(readonly=self.backend.readonly, replay=self.is_replay)
        grid = self.query_one(TraceGrid)
        grid.monochrome = self.app.no_color
        self._show_all()
        self.set_interval(1.0, self._tick, name="status clock")
        self.set_interval(GUEST_VALUES_S, self._show_guest_values, name="guest values")
        self.app.theme_changed_signal.subscribe(self, self._on_theme_changed)
        self.backend.subscribe(self._on_event)
        painted = asyncio.Event()
        self.call_after_refresh(painted.set)
        self._start_backend(painted)

    @work(group="backend", exit_on_error=False)
    async def _start_backend(self, painted: asyncio.Event) -> None:
        # The first frame goes out before the backend starts (a demo's lab, a live lab's
        # connections): it shows the lab's layout, which needs neither.
        await painted.wait()
        try:
            await self.backend.start()
        except Exception as error:  # the screen stays, showing hosts as they are
            self.notify(str(error), title="could not start", severity="error", timeout=15)

    def hold_plots(self) -> None:
        """A key was pressed: its frame goes out before the plots draw again."""
        if self.is_mounted:
            self.query_one(TraceGrid).hold()

    def _on_theme_changed(self, _theme: object) -> None:
        self.query_one(TraceGrid).recolor()

    # -- events --------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """The backend's subscriber: buffer, and hand over at most every FLUSH_S."""
        if self._detached:
            return
        self._pending.append(event)
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        delay = self._last_flush + FLUSH_S - time.monotonic()
        if delay > 0:
            self.set_timer(delay, self._flush, name="event flush")
        else:
            self.call_next(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        self.post_message(EventsArrived(batch))

    def on_events_arrived(self, message: EventsArrived) -> None:
        message.stop()
        before = set(self.state.commands)
        changes = self.state.apply_all(message.events)
        forgotten = [cmd_id for cmd_id in before if cmd_id not in self.state.commands]
        self._apply(changes, forgotten)

    def _apply(self, changes: Changes, forgotten: list[int]) -> None:
        state = self.state
        now = self.backend.clock()
        if changes.hosts or changes.storage or state.guest.host != self._guest_shown_on:
            self._show_hosts()
        if changes.guest:
            guest = state.guest
            if (guest.host, guest.reachable) != self._guest_seen:
                self._guest_seen = (guest.host, guest.reachable)
                self.query_one(GuestPane).show(state, now)  # where it runs: at once
            else:
                self._guest_values_dirty = True  # its probe values: a few times a second
        if changes.migration:
            self.query_one(MigrationBar).show(state.migration, now)
        if changes.phase:
            self._show_status()
        log = self.query_one(CommandLog)
        if forgotten:
            log.forget(forgotten)
        if changes.commands:
            seen: dict[int, None] = dict.fromkeys(changes.commands)
            log.show([state.commands[i] for i in seen if i in state.commands])
        grid = self.query_one(TraceGrid)
        for key in changes.new_traces:
            grid.add_trace(key)
        if changes.traces:
            grid.mark_dirty(changes.traces)
        for note in changes.notes:
            severity = _NOTE_SEVERITY.get(note.level, "information")
            if note.level != "info" or not self.is_replay:
                self.notify(note.text, severity=severity)  # type: ignore[arg-type]  # as text

    def _show_hosts(self) -> None:
        self._guest_shown_on = self.state.guest.host
        for pane in self.query(HostPane):
            pane.show(self.state)
        self.query_one(StoragePane).show(self.state)

    def _show_all(self) -> None:
        now = self.backend.clock()
        self._show_hosts()
        self.query_one(GuestPane).show(self.state, now)
        self.query_one(MigrationBar).show(self.state.migration, now)
        self._show_status()

    def _show_guest_values(self) -> None:
        if self._guest_values_dirty:
            self._guest_values_dirty = False
            self.query_one(GuestPane).show(self.state, self.backend.clock())

    def _tick(self) -> None:
        """Once a second: the clock, and what depends on time alone."""
        now = self.backend.clock()
        self._show_status()
        guest = self.state.guest
        if guest.reachable is False:
            self.query_one(GuestPane).show(self.state, now)
        if self.state.migration.active:
            self.query_one(MigrationBar).show(self.state.migration, now)
            self.query_one(TraceGrid).mark_dirty()

    def _scenario_text(self) -> str | None:
        state = self.state
        if state.scenario is None:
            return None
        if state.scenario_status in (None, "running", "ok"):
            return state.scenario
        return f"{state.scenario} {state.scenario_status}"

    def _show_status(self) -> None:
        backend = self.backend
        replay: str | None = None
        if isinstance(backend, ReplayControls):
            speed = "max" if backend.speed == 0 else f"{backend.speed:g}×"
            if backend.finished:
                replay = f"{speed} end"
            elif backend.paused:
                replay = f"{speed} paused"
            else:
                replay = f"{speed} ▶"
        info = StatusInfo(
            lab=backend.layout.name,
            simulated=backend.simulated,
            readonly=backend.readonly,
            replay=replay,
            scenario=self._scenario_text(),
            phase=self.state.phase,
            log=backend.session_log,
            elapsed_s=backend.clock() - self.state.t0,
        )
        self.query_one(StatusBar).show(info)

    # -- which keys apply ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("toggle_pause", "faster", "slower"):
            return self.is_replay
        if action == "close_replay":
            return self.overlay
        return True

    # -- view keys ---------------------------------------------------------------------------------

    def action_toggle_log(self) -> None:
        log = self.query_one(CommandLog)
        log.display = not log.display
        if log.display:
            log.table.focus()

    def action_ping_interval(self) -> None:
        backend = self.backend
        if not isinstance(backend, PingControls):
            self.notify("this console does not ping the guest (a replay shows what was)", timeout=3)
            return
        current = backend.ping_interval_s
        index = _PING_INTERVALS.index(current) if current in _PING_INTERVALS else -1
        chosen = _PING_INTERVALS[(index + 1) % len(_PING_INTERVALS)]
        backend.set_ping_interval(chosen)
        text = (
            "not pinging the guest" if chosen is None else f"pinging the guest every {chosen:g} s"
        )
        self.notify(text, timeout=3)

    def action_toggle_polls(self) -> None:
        log = self.query_one(CommandLog)
        log.set_show_polls(not log.show_polls)

    def on_command_log_show_output(self, message: CommandLog.ShowOutput) -> None:
        # One at a time: enter pressed again before the first one showed (keys come
        # faster than screens mount) would stack a screen per key.
        if self._output_open:
            return
        command = self.state.commands.get(message.cmd_id)
        if command is not None:
            self._output_open = True
            self.app.push_screen(CommandOutputScreen(command), self._output_closed)

    def _output_closed(self, _: None) -> None:
        self._output_open = False

    def action_help(self) -> None:
        # Built once and kept installed: opening it again is a repaint, not a compose.
        name = f"help-{id(self):x}"
        if not self.app.is_screen_installed(name):
            self.app.install_screen(HelpScreen(self.readonly_reason), name)
        self.app.push_screen(name)

    def action_open_log(self) -> None:
        suggestion = str(self.backend.session_log or "")

        def chosen(path: str | None) -> None:
            if path is not None:
                self._open_log(path)

        self.app.push_screen(OpenLog(suggestion), chosen)

    @work(group="open", exit_on_error=False)
    async def _open_log(self, path: str) -> None:
        from tui.replay import ReplayBackend  # a live console rarely needs it

        try:
            session: Session = await asyncio.to_thread(read_session, Path(path))
        except SessionLogError as error:
            self.notify(str(error), title="cannot replay", severity="error", timeout=10)
            return
        await self.app.push_screen(MainScreen(ReplayBackend(session), overlay=True))

    # -- replay keys -------------------------------------------------------------------------------

    def action_toggle_pause(self) -> None:
        if isinstance(self.backend, ReplayControls):
            self.backend.toggle_pause()
            self._show_status()

    def action_faster(self) -> None:
        self._step_speed(+1)

    def action_slower(self) -> None:
        self._step_speed(-1)

    def _step_speed(self, step: int) -> None:
        backend = self.backend
        if not isinstance(backend, ReplayControls):
            return
        current = backend.speed
        index = _SPEEDS.index(current) if current in _SPEEDS else _SPEEDS.index(1.0)
        backend.set_speed(_SPEEDS[min(max(index + step, 0), len(_SPEEDS) - 1)])
        self._show_status()

    def action_close_replay(self) -> None:
        if self.overlay:
            self._detached = True  # events still in flight are dropped, not drawn
            self.app.run_worker(self.close_backend(), group="close", exit_on_error=False)
            self.dismiss(None)
