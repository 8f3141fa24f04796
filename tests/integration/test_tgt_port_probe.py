"""`sandbox up` asks whether a tgtd runs on a control port without talking to it.

tgt 1.0.85 keeps a control connection that closes without a request and polls it
forever at 100 % CPU (mgmt.c reads EOF and, errno being a stale EAGAIN, neither closes
nor drops it). The probe used to connect and close: every `up` left the tgtds of the
sandboxes already up spinning. It now reads tgtd's lock file instead.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.sandbox import services
from backend.sandbox.services import tgt_port_in_use, tgt_socket_files
from tests.conftest import need, need_root
from tests.support.tgtd import Tgtd


@pytest.fixture
def tgtd(tmp_path: Path) -> Iterator[Tgtd]:
    need("tgtd", "tgtadm")
    need_root()
    server = Tgtd(tmp_path / "tgtd")
    server.start()
    yield server
    server.stop()


async def test_a_running_tgtd_is_seen_by_its_lock(tgtd: Tgtd) -> None:
    assert await tgt_port_in_use(tgtd.control_port)
    tgtd.show()  # and it still answers
    tgtd.stop()
    assert not await tgt_port_in_use(tgtd.control_port)


async def test_the_probe_never_connects_to_the_control_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for tgtd: its socket listening and its lock held by another process
    (POSIX locks do not conflict within one process). A connection the probe made would
    wait in the backlog; tgt 1.0.85 would spin on it once closed."""
    monkeypatch.setattr(services, "TGT_SOCKET_DIR", tmp_path)
    port = 4711
    socket_file, lock_file = tgt_socket_files(port)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(socket_file))
    listener.listen(8)
    listener.setblocking(False)
    holder = hold_lock(lock_file)
    try:
        assert await tgt_port_in_use(port)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        holder.kill()
        holder.wait()
        listener.close()
    assert not await tgt_port_in_use(port)  # the lock went with its process


def hold_lock(path: Path) -> subprocess.Popen[str]:
    """Another process holding lockf on byte 0 of ``path``, as tgtd does."""
    path.touch()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1)
print("locked", flush=True)
time.sleep(600)
"""


async def test_socket_files_left_behind_are_no_tgtd(tgtd: Tgtd) -> None:
    port = tgtd.control_port
    tgtd.process.kill()  # type: ignore[union-attr]  # no clean exit: its files stay
    tgtd.process.wait()  # type: ignore[union-attr]
    socket_file, lock_file = tgt_socket_files(port)
    assert lock_file.exists()
    assert not await tgt_port_in_use(port)
    tgtd.process = None
    for path in (socket_file, lock_file):
        path.unlink(missing_ok=True)


async def test_no_lock_file_is_no_tgtd() -> None:
    assert not await tgt_port_in_use(32767)  # tgtd's highest port; nothing made here
