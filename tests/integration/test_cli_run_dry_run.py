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

from tests.conftest import need, need_root
from tests.support.sshd import Sshd, loopback_xen_lab
from tests.support.tgtd import Tgtd, disk_image, free_control_port

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
        loopback_xen_lab(
            server, tmp_path / "disk.img", tgt_control_port=control_port, guest_port=server.port
        )
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


@pytest.fixture
def fresh_tgtd(tmp_path: Path) -> Iterator[Tgtd]:
    need("tgtd", "tgtadm")
    need_root()  # tgtd's control socket lives in /var/run/tgtd
    server = Tgtd(tmp_path / "tgtd")
    server.start()
    yield server
    server.stop()


def test_a_dry_run_on_a_fresh_qemu_lab_plans_export_boot_and_migration(
    fresh_tgtd: Tgtd, tmp_path: Path
) -> None:
    # Nothing exported yet: the dry run plans the export, and the logins that follow
    # it (QEMU's initiator: nothing to run) without asking the target for that disk.
    iqn = "iqn.2024-01.lab.fresh:disk1"
    lab = tmp_path / "lab.toml"
    lab.write_text(
        f"""\
[lab]
name = "fresh"
link_mbit = 1000

[hosts.storage]
address = "local"

[hosts.h1]
address = "local"

[hosts.h2]
address = "local"

[storage]
host = "storage"
driver = "tgt"
iqn = "{iqn}"
device = "{disk_image(tmp_path / "disk.img")}"
portal = "{fresh_tgtd.portal}"
tgt_control_port = {fresh_tgtd.control_port}

[hypervisor]
driver = "qemu"
hosts = ["h1", "h2"]
run_dir = "{tmp_path / "run"}"

[guest]
name = "guest"
address = "127.0.0.1"
vcpus = 1
memory_mb = 128

[guest.qemu]
kernel = "/boot/vmlinuz"
"""
    )
    done = miglab("run", "migrate-ping", "--lab", str(lab), "--dry-run")
    assert done.returncode == 0, done.stderr
    adm = f"storage: tgtadm -C {fresh_tgtd.control_port} --lld iscsi"
    assert f"{adm} --op new --mode target --tid 1 -T {iqn}" in done.stdout
    assert "Boot the guest on h1" in done.stdout and "Migration 1: h1 -> h2" in done.stdout
    assert iqn not in fresh_tgtd.show()  # and nothing changed
