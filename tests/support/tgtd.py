"""A real tgtd for tests: its own control port and portal on 127.0.0.1, stopped cleanly.

``tgtd -f -C N --iscsi portal=127.0.0.1:PORT`` with a control port N no other tgtd on
this machine uses (every ``tgtadm`` call must carry ``-C N``) and a free TCP port.
tgtd ignores SIGTERM, so :meth:`Tgtd.stop` does what LAB-NOTES.md says: delete every
target with ``--force``, then ``--op delete --mode system``; it also removes the
control socket and lock file tgtd leaves behind.

:class:`Session` holds a real iSCSI session open with libiscsi's ``iscsi-perf`` (as
``tests/data/tgt/capture.sh`` does), so a test can see an initiator connected.

Also the storage tests' other helpers: :func:`storage_lab` (a lab.toml around a
[storage] table) and :func:`install_fakes` (the fake targetcli, ietadm, iscsiadm,
iscsi-ls and ``test`` as programs on PATH, for the tools that cannot run here).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from backend.drivers.parse_tgt import parse_show_target
from tests.support.sshd import free_port

SOCKET_DIR = Path("/var/run/tgtd")


def free_control_port() -> int:
    """A tgtd control port whose socket does not exist (so no tgtd uses it)."""
    for _ in range(1000):
        port = random.randint(2000, 32000)  # tgtd accepts -C 0..32767
        if not (SOCKET_DIR / f"socket.{port}").exists():
            return port
    raise RuntimeError("no free tgtd control port")


@dataclass
class Tgtd:
    """One running tgtd; ``stop()`` ends it (idempotent)."""

    directory: Path
    address: str = "127.0.0.1"
    control_port: int = field(default_factory=free_control_port)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def portal(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "tgtd.log"

    def adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``tgtadm -C N --lld iscsi ARGS`` (what a test uses to look behind the driver)."""
        argv = ["tgtadm", "-C", str(self.control_port), "--lld", "iscsi", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=20)

    def show(self) -> str:
        return self.adm("--op", "show", "--mode", "target").stdout

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["tgtd", "-f", "-C", str(self.control_port), "--iscsi", f"portal={self.portal}"],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        # Until it answers or dies (no deadline of its own: a hang is the test's timeout).
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"tgtd exited: {self.log_path.read_text()}")
            if self.adm("--op", "show", "--mode", "target", check=False).returncode == 0:
                try:
                    with socket.create_connection((self.address, self.port), timeout=0.2):
                        return
                except OSError:
                    pass
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(Exception):
                for target in parse_show_target(self.show()):
                    self.adm(
                        "--op",
                        "delete",
                        "--mode",
                        "target",
                        "--tid",
                        str(target.tid),
                        "--force",
                        check=False,
                    )
            subprocess.run(
                ["tgtadm", "-C", str(self.control_port), "--op", "delete", "--mode", "system"],
                capture_output=True,
                timeout=20,
            )
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for name in (f"socket.{self.control_port}", f"socket.{self.control_port}.lock"):
            with contextlib.suppress(FileNotFoundError):
                (SOCKET_DIR / name).unlink()


def disk_image(path: Path, size: int = 64 << 20) -> Path:
    """A sparse backing file of ``size`` bytes."""
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


@dataclass
class Session:
    """A real iSCSI session held open by ``iscsi-perf`` until :meth:`close`."""

    url: str
    initiator: str
    seconds: int = 60
    process: subprocess.Popen[bytes] | None = None

    def open(self) -> Session:
        self.process = subprocess.Popen(
            ["iscsi-perf", "-i", self.initiator, "-t", str(self.seconds), self.url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # iscsi-perf ignores SIGTERM while it tries to reconnect to a vanished target.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def storage_lab(
    *,
    driver: str,
    portal: str,
    device: str,
    storage_host: str = '[hosts.storage]\naddress = "local"\n',
    hypervisor: str = "xen",
    extra_storage: str = "",
    lun: int = 1,
    iqn: str = "iqn.2024-01.lab.storage:disk1",
) -> str:
    """A lab.toml for storage tests: ``storage_host`` is the [hosts.storage] table; the
    hypervisor hosts xen1 and xen2 are local too (the fake-tool tests run them)."""
    if hypervisor == "qemu":
        qemu = '\n[guest.qemu]\nkernel = "/var/lib/miglab/vmlinuz"\n'
    else:
        qemu = 'config = "/etc/xen/guest.cfg"\n'
    return f"""
[lab]
name = "storage-test"
link_mbit = 100

{storage_host}
[hosts.xen1]
address = "local"

[hosts.xen2]
address = "local"

[storage]
host = "storage"
driver = "{driver}"
iqn = "{iqn}"
device = "{device}"
portal = "{portal}"
lun = {lun}
{extra_storage}

[hypervisor]
driver = "{hypervisor}"
hosts = ["xen1", "xen2"]

[guest]
name = "guest"
address = "198.18.0.50"
vcpus = 1
memory_mb = 256
{qemu}"""


REPO = Path(__file__).resolve().parents[2]
FAKE_TOOLS = {
    "iscsiadm": "tests.support.fake_tools.iscsiadm",
    "targetcli": "tests.support.fake_tools.targetcli",
    "ietadm": "tests.support.fake_tools.ietadm",
    "iscsi-ls": "tests.support.fake_tools.iscsi_ls",
}


def install_fakes(bin_dir: Path, *names: str) -> Path:
    """Wrapper scripts named like the real tools (``iscsiadm``...) that run the fakes;
    ``test`` answers ``-b``/``-f``/``-e`` for the fake host's disks and files. Put
    ``bin_dir`` first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    for name in names:
        if name == "test":
            call = "from tests.support.fake_tools import test_main; test_main()"
            body = f'exec {python} -c "{call}" "$@"'
        else:
            body = f'exec {python} -m {FAKE_TOOLS[name]} "$@"'
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\nexport PYTHONPATH={REPO}\n{body}\n")
        script.chmod(0o755)
    return bin_dir
