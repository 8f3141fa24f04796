"""Textual's Linux driver, with the escape key known in tens of ms, not over 100.

A terminal sends the escape key as a lone ESC byte, and the start of every other
key's sequence (an arrow is ESC [ A) as ESC too. Textual's parser tells them apart
by waiting ``ESCDELAY`` (100 ms unless set) for more; and the Linux driver's input
thread only looks whether that wait is over when its ``selector.select(0.1)`` returns
(textual/drivers/linux_driver.py, ``run_input_thread``, Textual 8.2): a lone escape
is known 100 ms or more after it arrived, whatever ``ESCDELAY`` says.

This driver's input thread is Textual's, but it waits for input no longer than the
parser's pending decision, and decides a lone ESC after :data:`ESCAPE_S` unless the
user set ``ESCDELAY``. A key's sequence comes in one write from the terminal, so it
arrives whole well within that (even over SSH). A terminal that speaks the kitty
keyboard protocol, which Textual asks for, sends escape as CSI 27 u: no wait at all.

When its input ends (the terminal hung up: an SSH connection dropped, a tmux window
killed under ``make demo``), Textual's thread went on selecting a descriptor that is
always readable and reading nothing, at half a core, for ever. This one stops
reading and tells the app (:class:`TerminalGone`), which closes as ``q`` would. A
hang-up signal (SIGHUP, sent when an SSH session ends) does the same: it used to kill
the console where it stood, its session log left without its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
from codecs import getincrementaldecoder
from collections.abc import Callable

from textual import constants
from textual._parser import ParseError
from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver
from textual.message import Message

ESCAPE_S = 0.02
"""How long after a lone ESC (with nothing after it) it is taken as the escape key."""

POLL_S = 0.1
"""The input thread's longest wait, as in Textual's: it looks for the exit this often."""

Decode = Callable[..., str]


def escape_delay() -> float:
    """The user's ``ESCDELAY`` (ms, as curses reads it) if set, else :data:`ESCAPE_S`."""
    if os.environ.get("ESCDELAY"):
        return constants.ESCAPE_DELAY
    return ESCAPE_S


def shorten_escape_wait(parser: XTermParser, delay: float) -> None:
    """After input: a sequence begun with ESC is decided ``delay`` after its last byte."""
    # The parser waits (for the rest of an ESC sequence) only when it set a deadline.
    if parser._timeout_time is not None:
        parser._timeout_time = min(parser._timeout_time, get_time() + delay)


def input_wait(parser: XTermParser) -> float:
    """How long the input thread may wait for input before the parser must decide."""
    deadline = parser._timeout_time
    if deadline is None:
        return POLL_S
    return min(POLL_S, max(0.0, deadline - get_time()))


class TerminalGone(Message):
    """The console's input ended: nobody can see it or answer it any more."""


class ConsoleDriver(LinuxDriver):
    """:class:`LinuxDriver` whose input thread knows a lone escape in :func:`escape_delay`."""

    terminal_gone = False
    """Set once the input ended: nothing is written any more (a write to a terminal that
    hung up fails, and Textual's writer thread, dead of it, would leave frames queued
    until the app blocked)."""

    def write(self, data: str) -> None:
        if not self.terminal_gone:
            super().write(data)

    def start_application_mode(self) -> None:
        super().start_application_mode()  # type: ignore[no-untyped-call]
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hung_up)

    def stop_application_mode(self) -> None:
        with contextlib.suppress(RuntimeError):  # no loop running: nothing to remove
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        super().stop_application_mode()

    def _hung_up(self) -> None:
        """The input has ended, or SIGHUP came: write no more, and tell the app once."""
        if not self.terminal_gone:
            self.terminal_gone = True
            self._app.post_message(TerminalGone())  # thread-safe in Textual

    def run_input_thread(self) -> None:
        """Wait for input and dispatch events (Textual's loop, with the waits above)."""
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode: Decode = getincrementaldecoder("utf-8")().decode
        delay = escape_delay()
        try:
            while not self.exit_event.is_set():
                ready = selector.select(input_wait(parser))
                if not self._take_input(parser, decode, ready, delay):
                    self._hung_up()
                    self.exit_event.wait()
                    return
            selector.unregister(self.fileno)
            self._take_input(parser, decode, selector.select(POLL_S), delay, final=True)
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except (EOFError, ParseError):
                pass

    def _take_input(
        self,
        parser: XTermParser,
        decode: Decode,
        ready: list[tuple[selectors.SelectorKey, int]],
        delay: float,
        final: bool = False,
    ) -> bool:
        """Read what is ready and send its keys; False once the input has ended."""
        for index, (_key, mask) in enumerate(ready):
            if not mask & selectors.EVENT_READ:
                continue
            last = index == len(ready) - 1
            try:
                raw = os.read(self.fileno, 1024 * 4)
            except OSError:  # EIO: the terminal hung up
                raw = b""
            if not raw:
                return False
            for event in parser.feed(decode(raw, final=final and last)):
                self.process_message(event)
            shorten_escape_wait(parser, delay)
        for event in parser.tick():
            self.process_message(event)
        return True
