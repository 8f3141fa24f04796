"""`miglab run --dry-run` as a user runs it (a separate process, a real sshd).

A failed command while the dry run looks at the lab is a clear message naming the
host, the command and its stderr, and exit 1; never a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.sshd import Sshd, free_port
from tests.support.tgtd import free_control_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Sshd]:
    path = need("sshd", "ssh-keygen", "tgtadm")["sshd"]
    sshd = Sshd(path, tmp_path / "sshd")
    sshd.setup()
    sshd.start()
    yield sshd
    sshd.stop()


def miglab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_a_failed_command_in_the_dry_run_is_a_message_and_exit_1(
    server: Sshd, tmp_path: Path
) -> None:
    # The storage host answers over SSH, but no tgtd listens on the lab's control port:
    # tgtadm fails on the host, for real.
    control_port = free_control_port()
    lab = tmp_path / "lab.toml"
    lab.write_text(
        f"""\
[lab]
name = "loopback"
link_mbit = 1000

{server.host_toml("storage")}
{server.host_toml("xen1")}
{server.host_toml("xen2")}
[storage]
host = "storage"
driver = "tgt"
iqn = "iqn.2026-11.test.miglab:disk"
device = "{tmp_path / "disk.img"}"
portal = "127.0.0.1:{free_port()}"
tgt_control_port = {control_port}

[hypervisor]
driver = "xen"
hosts = ["xen1", "xen2"]

[guest]
name = "guest"
address = "127.0.0.1"
port = {server.port}
vcpus = 1
memory_mb = 256
config = "/etc/xen/guest.cfg"
"""
    )
    done = miglab("run", "migrate-ping", "--lab", str(lab), "--dry-run")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    message = done.stderr.strip()
    assert message.startswith("miglab: "), message
    assert "storage" in message  # the host
    assert f"tgtadm -C {control_port} --lld iscsi --op show" in message  # the command
    assert "tgtd" in message or "daemon" in message  # tgtadm's own stderr
    assert done.stdout == ""  # no half a plan
