"""The console's driver: a lone escape is decided in ESCAPE_S, other keys as before.

Textual's Linux driver looks whether a lone ESC is the escape key only when its 0.1 s
input poll returns, so escape took over 100 ms whatever ESCDELAY said. These tests
check the waits the input thread uses (not how fast a machine runs them), and that the
real input thread on a pseudo-terminal still reads keys as Textual does.
"""

from __future__ import annotations

import os
import pty
import signal
import threading
import tty
from collections.abc import Callable, Iterator

import pytest
from textual import constants, events
from textual._xterm_parser import XTermParser
from textual.app import App
from textual.message import Message

from tests.support.waiting import until
from tui import driver as console_driver
from tui.app import MiglabApp
from tui.driver import ESCAPE_S, POLL_S, ConsoleDriver, input_wait, shorten_escape_wait
from tui.replay import ReplayBackend


def keys_of(messages: object) -> list[str]:
    return [m.key for m in messages if isinstance(m, events.Key)]  # type: ignore[attr-defined]


def test_the_console_runs_on_its_driver_on_a_linux_terminal(
    replay: Callable[..., ReplayBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "DRIVER", None)
    assert MiglabApp(replay()).driver_class is ConsoleDriver


def test_a_driver_chosen_through_textual_driver_is_kept(
    replay: Callable[..., ReplayBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "DRIVER", "textual.drivers.headless_driver:HeadlessDriver")
    assert MiglabApp(replay()).driver_class.__name__ == "HeadlessDriver"


def test_after_a_lone_escape_the_input_thread_waits_no_longer_than_escape_s() -> None:
    parser = XTermParser()
    assert input_wait(parser) == POLL_S  # nothing pending: Textual's poll
    assert keys_of(parser.feed("\x1b")) == []  # escape, or the start of a sequence?
    shorten_escape_wait(parser, ESCAPE_S)
    assert 0 < input_wait(parser) <= ESCAPE_S  # Textual's own wait: 0.1 s and more
    decided: list[str] = []
    while not decided:  # the parser decides once its (short) wait is over
        decided = keys_of(parser.tick())
    assert decided == ["escape"]
    assert input_wait(parser) == POLL_S


def test_a_whole_sequence_is_its_key_with_no_wait() -> None:
    parser = XTermParser()
    assert keys_of(parser.feed("\x1b[A")) == ["up"]
    shorten_escape_wait(parser, ESCAPE_S)
    assert input_wait(parser) == POLL_S
    assert keys_of(parser.feed("\x1b[27u")) == ["escape"]  # the kitty protocol's escape


def test_escdelay_set_by_the_user_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESCDELAY", "250")
    monkeypatch.setattr(constants, "ESCAPE_DELAY", 0.25)
    assert console_driver.escape_delay() == 0.25
    monkeypatch.delenv("ESCDELAY")
    assert console_driver.escape_delay() == ESCAPE_S


class Recording(ConsoleDriver):
    """The real input thread; what it decodes is kept instead of sent to an app."""

    def __init__(self, app: App[object], fileno: int) -> None:
        super().__init__(app)
        self.fileno = fileno
        self.got: list[Message] = []

    def process_message(self, message: Message) -> None:
        self.got.append(message)


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    """A pseudo-terminal in raw mode, as Textual sets it: (master, slave)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    # The driver puts in handlers for ctrl+z; the test process keeps its own.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTSTP, signal.SIGCONT)}
    try:
        yield master, slave
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        os.close(master)
        os.close(slave)


async def test_the_input_thread_reads_escape_arrows_and_letters(
    terminal: tuple[int, int],
) -> None:
    master, slave = terminal
    driver = Recording(App(), slave)
    thread = threading.Thread(target=driver.run_input_thread, daemon=True)
    thread.start()
    try:
        for sent, key in [(b"\x1b", "escape"), (b"\x1b[A", "up"), (b"q", "q"), (b"\x1b", "escape")]:
            before = len(keys_of(driver.got))
            os.write(master, sent)
            await until(lambda before=before: len(keys_of(driver.got)) > before)  # type: ignore[misc]
            assert keys_of(driver.got)[before:] == [key]
    finally:
        driver.exit_event.set()
        await until(lambda: not thread.is_alive())
