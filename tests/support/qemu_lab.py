"""A two-host QEMU lab on this machine for the qemu driver's tests.

- :class:`Tgtd`: a real tgtd on 127.0.0.1 with its own control port, exporting one
  small image file as LUN 1 (the shared disk, reached by QEMU's own iSCSI initiator).
- :func:`dirtier_image`: the miglab guest image plus a RAM dirtier the kernel command line
  switches on (``miglabtest.dirty_mib=N``), for the convergence tests.
- :func:`qemu_lab_toml`: a lab.toml for hosts ``h1`` and ``h2`` (local, or given tables).
- :func:`kill_qemus`: stop every QEMU whose command line mentions a run directory (the
  driver daemonizes them, so they are nobody's children).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from backend.sandbox.guest_image import GuestImage, build_guest_image, default_cache_dir
from tests.support.sshd import free_port

IQN = "iqn.2024-01.lab.miglab-test:disk1"

# Rewrites N MiB of a tmpfs file with non-zero bytes, round after round. Not the project's
# dirtier probe: that one writes zeros, and QEMU sends a zero page as a flag ("duplicate"),
# so a zero-writing guest barely slows a QEMU migration.
DIRTIER_INIT = r"""
for arg in $(cat /proc/cmdline); do
    case "$arg" in miglabtest.dirty_mib=*) dirty_mib="${arg#miglabtest.dirty_mib=}" ;; esac
done
if [ -n "$dirty_mib" ]; then
    # 128 bytes doubled up to dirty_mib MiB: cat is quick where `yes | head` is not (TCG).
    printf 'miglab-dirty-%02d\n' 0 1 2 3 4 5 6 7 > /tmp/pattern
    while [ "$(wc -c < /tmp/pattern)" -lt $((dirty_mib * 1048576)) ]; do
        cat /tmp/pattern /tmp/pattern > /tmp/pattern2 && mv /tmp/pattern2 /tmp/pattern
    done
    (while :; do
        dd if=/tmp/pattern of=/tmp/dirty bs=1M count="$dirty_mib" conv=notrunc 2>/dev/null
    done) &
    echo "MIGLAB-TEST-DIRTIER mib=$dirty_mib"
fi
"""


async def dirtier_image() -> GuestImage:
    return await build_guest_image(
        default_cache_dir(), extra_files={"/etc/miglab/init.d/60-test-dirtier.sh": DIRTIER_INIT}
    )


class Tgtd:
    """``tgtd -f -C N --iscsi portal=127.0.0.1:PORT`` exporting ``disk`` as LUN 1."""

    def __init__(self, directory: Path, size_mib: int = 16) -> None:
        self.directory = directory
        self.port = free_port()
        self.control = self._free_control_port()
        self.disk = directory / "disk.img"
        self.size_mib = size_mib
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def _free_control_port() -> int:
        for n in range(700 + os.getpid() % 200, 1000):
            if not Path(f"/var/run/tgtd/socket.{n}").exists():
                return n
        raise RuntimeError("no free tgtd control port")

    def adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tgtadm", "-C", str(self.control), "--lld", "iscsi", *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def start(self) -> None:
        with self.disk.open("wb") as handle:
            handle.truncate(self.size_mib << 20)
        log = (self.directory / "tgtd.log").open("ab")
        self.process = subprocess.Popen(
            ["tgtd", "-f", "-C", str(self.control), "--iscsi", f"portal=127.0.0.1:{self.port}"],
            stdout=log,
            stderr=log,
        )
        # Until it answers or dies (no deadline of its own: a hang is the test's timeout).
        while self.adm("--op", "show", "--mode", "target", check=False).returncode != 0:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"tgtd did not start: {(self.directory / 'tgtd.log').read_text()}"
                )
            time.sleep(0.05)
        self.adm("--op", "new", "--mode", "target", "--tid", "1", "-T", IQN)
        self.adm(
            "--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", str(self.disk)
        )
        self.adm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")

    def show(self) -> str:
        return self.adm("--op", "show", "--mode", "target").stdout

    def stop(self) -> None:
        """tgtd ignores SIGTERM: delete the target, then the system (LAB-NOTES)."""
        if self.process is None:
            return
        self.adm("--op", "delete", "--mode", "target", "--tid", "1", "--force", check=False)
        subprocess.run(
            ["tgtadm", "-C", str(self.control), "--op", "delete", "--mode", "system"],
            capture_output=True,
            check=False,
        )
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        for leftover in (f"socket.{self.control}", f"socket.{self.control}.lock"):
            Path("/var/run/tgtd", leftover).unlink(missing_ok=True)


def local_hosts_toml() -> str:
    return '[hosts.h1]\naddress = "local"\n\n[hosts.h2]\naddress = "local"\n'


def qemu_lab_toml(
    *,
    hosts_toml: str,
    tgtd: Tgtd,
    image: GuestImage,
    run_dir: Path,
    migration_port: int,
    memory_mb: int = 128,
    bandwidth_mbit: int = 400,
    append: str = "miglab.heartbeat=1",
    convergence: str = "none",
    after_syncs: int = 5,
) -> str:
    return f"""\
[lab]
name = "qemu-test"
link_mbit = 1000

[hosts.storage]
address = "local"

{hosts_toml}
[storage]
host = "storage"
driver = "tgt"
iqn = "{IQN}"
device = "{tgtd.disk}"
portal = "127.0.0.1:{tgtd.port}"
tgt_control_port = {tgtd.control}

[hypervisor]
driver = "qemu"
hosts = ["h1", "h2"]
migrate_bandwidth_mbit = {bandwidth_mbit}
run_dir = "{run_dir}"
convergence = "{convergence}"
convergence_after_syncs = {after_syncs}

[guest]
name = "guest"
address = "198.18.0.50"
vcpus = 1
memory_mb = {memory_mb}

[guest.qemu]
kernel = "{image.kernel}"
initrd = "{image.initrd}"
append = "{append}"
migration_port = {migration_port}
"""


def qemu_pids(mention: Path | str) -> list[int]:
    """Live QEMU processes whose command line mentions ``mention`` (a path, a file name)."""
    found = []
    needle = str(mention).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and b"qemu-system" in cmdline.split(b"\0", 1)[0]:
            found.append(int(entry.name))
    return found


def kill_qemus(run_dir: Path) -> list[int]:
    """SIGKILL the QEMUs of ``run_dir``; returns the pids that were still running."""
    pids = qemu_pids(run_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids
