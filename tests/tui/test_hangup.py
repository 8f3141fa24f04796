"""The terminal goes away: the console closes as ``q`` would, and its log is complete.

An SSH session that ends sends the console SIGHUP; a terminal closed under a parent
that does not pass the signal on (``make demo`` in a killed tmux window) leaves the
console reading the end of its input instead. The first used to kill the console with
its session log unfinished; the second left it spinning on the dead terminal at half
a core, for ever. Both run the real console (``miglab demo``) on a pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Console:
    """``miglab demo`` on a pseudo-terminal that is not its controlling terminal (so
    closing it sends no signal: the console only sees its input end)."""

    def __init__(self, log_dir: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = dict(os.environ, TERM="xterm-256color", PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "demo", "--log-dir", str(log_dir)],
            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.master: int | None = master
        self.output = bytearray()
        self.changed = threading.Condition()
        threading.Thread(target=self._read, args=(master,), daemon=True).start()

    def _read(self, master: int) -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            with self.changed:
                self.output.extend(data)
                self.changed.notify_all()
            if not data:
                return

    def wait_for(self, text: bytes) -> None:
        """Until the console has drawn ``text`` (bounded by a generous 120 s)."""
        with self.changed:
            drawn = self.changed.wait_for(lambda: text in self.output, timeout=120)
        assert drawn, f"{text!r} not drawn; the screen so far ends {bytes(self.output[-400:])!r}"

    def close_terminal(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def finish(self) -> int:
        """The console's exit status, once it has exited (bounded by 120 s)."""
        try:
            return self.process.wait(timeout=120)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.close_terminal()


def last_event(log_dir: Path) -> dict[str, object]:
    (log,) = log_dir.glob("*.jsonl")
    lines = log.read_text().splitlines()
    event: dict[str, object] = json.loads(lines[-1])
    return event


@pytest.mark.parametrize("how", ["input ends", "SIGHUP"])
def test_the_console_closes_and_saves_its_log_when_the_terminal_goes(
    tmp_path: Path, how: str
) -> None:
    console = Console(tmp_path)
    try:
        console.wait_for(b"MB free")  # the lab is up and the session log open
        if how == "SIGHUP":
            console.process.send_signal(signal.SIGHUP)
        else:
            console.close_terminal()
    finally:
        status = console.finish()
    assert status == 0
    end = last_event(tmp_path)
    assert end["kind"] == "session.end" and end["status"] == "ok"
