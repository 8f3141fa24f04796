"""The qemu driver when a host's SSH drops in the middle of a migration (real QEMU, sshd).

h1 and h2 are this machine, each reached through a real sshd of its own; the guest's
disk is a LUN of a real tgtd. While QEMU migrates (QEMU to QEMU over TCP, not over
SSH), h2's sshd is stopped and its connections are killed: the migration completes,
but the driver can no longer ask h2 whether the guest runs there. The migration must
still end with its ``migration.finished`` (saying what is known: QEMU's figures, and
that where the guest runs is unclear), then a DriverError naming the host, the command
and why; never a raw CommandFailed. The source's copy stays paused: if h2's QEMU is
gone it is all that is left of the guest.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from backend.config import parse_lab
from backend.drivers.base import DomainInfo, DriverError
from backend.drivers.hv_qemu import QemuDriver
from backend.drivers.parse_xl import MIGRATEDAWAY_SUFFIX
from backend.events import Event, MigrationFinished, MigrationProgress, Note
from backend.sandbox.guest_image import READY_MARKER, console_offset, wait_for_console
from backend.transport.base import CommandFailed
from backend.transport.hosts import Hosts
from tests.conftest import need, need_root
from tests.integration.conftest import make_sshd
from tests.support.qemu_lab import Tgtd, dirtier_image, kill_qemus, qemu_lab_toml, qemu_pids
from tests.support.sshd import Sshd, free_port

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]  # a cold image build downloads


@pytest.fixture
def tgtd(tmp_path: Path) -> Iterator[Tgtd]:
    need("tgtd", "tgtadm", "qemu-system-x86_64")
    need_root()  # tgtd's control socket lives in /var/run/tgtd
    (tmp_path / "tgtd").mkdir()
    server = Tgtd(tmp_path / "tgtd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def run_dir() -> AsyncIterator[Path]:
    # Short: a Unix socket path must stay under 108 bytes.
    path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="miglab-lost-"))
    yield path
    kill_qemus(path)  # this test leaves the paused source on purpose
    await asyncio.to_thread(shutil.rmtree, path, True)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, Sshd]]:
    first = make_sshd(tmp_path / "h1-sshd")
    second = make_sshd(tmp_path / "h2-sshd", client_key=first.client_key)
    yield {"h1": first, "h2": second}
    for server in (first, second):
        server.stop()


def host_toml(name: str, server: Sshd, key: Path) -> str:
    return (
        f'[hosts.{name}]\naddress = "{server.address}"\nport = {server.port}\n'
        f'user = "{server.user}"\nidentity = "{key}"\nknown_hosts = "{server.known_hosts}"\n'
        "keepalive_s = 1.0\n\n"
    )


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, pending = [], list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return found


def drop_ssh(server: Sshd) -> None:
    """The host's SSH goes away: no new connections, and the open ones cut."""
    assert server.process is not None
    listener = server.process.pid
    sessions = descendants(listener)  # the per-connection sshds and their shells
    server.stop()
    for pid in sessions:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def test_dest_ssh_lost_after_qemu_completed_ends_with_the_event_and_a_driver_error(
    tgtd: Tgtd, run_dir: Path, servers: dict[str, Sshd]
) -> None:
    image = await dirtier_image()
    key = servers["h1"].client_key
    text = qemu_lab_toml(
        hosts_toml=host_toml("h1", servers["h1"], key) + host_toml("h2", servers["h2"], key),
        tgtd=tgtd,
        image=image,
        run_dir=run_dir,
        migration_port=free_port(),
        bandwidth_mbit=40,  # a migration of a few seconds: time to cut h2's SSH during it
    )
    lab = parse_lab(text)
    events: list[Event] = []
    dropped = asyncio.Event()

    def watch(event: Event) -> None:
        events.append(event)
        if (
            isinstance(event, MigrationProgress)
            and event.transferred_bytes
            and not dropped.is_set()
        ):
            drop_ssh(servers["h2"])  # QEMU goes on migrating over its own TCP connection
            dropped.set()

    hosts = Hosts(lab, watch)
    try:
        assert await hosts.open(["h1", "h2"]) == {"h1": None, "h2": None}
        driver = QemuDriver(lab, {n: hosts[n] for n in ("h1", "h2")}, watch)
        offset = console_offset(Path(driver.files("h1").log))
        assert (await driver.create("h1")).changed
        await wait_for_console(
            Path(driver.files("h1").log), READY_MARKER, timeout=90, offset=offset
        )

        try:
            await driver.migrate("h1", "h2")
        except CommandFailed as exc:  # the defect: a raw transport error, nothing recorded
            pytest.fail(f"a raw CommandFailed escaped: {exc}")
        except DriverError as exc:
            error = str(exc)
        else:
            pytest.fail("the migration ended as if h2 could be checked")
        assert dropped.is_set()
        # It names the host, the command and why it failed.
        assert "h2" in error and "cannot be checked" in error
        assert "miglab-qemu-pid" in error  # the command that could not run on h2
        assert "connection" in error.lower() or "not connected" in error.lower()

        [finished] = [e for e in events if isinstance(e, MigrationFinished)]
        assert (finished.source, finished.dest, finished.ok) == ("h1", "h2", False)
        assert finished.guest_host is None  # unclear: h2 cannot be asked
        assert finished.error is not None and "h2" in finished.error
        # What is known is kept: QEMU's own figures of the completed migration.
        assert finished.total_time_ms is not None and finished.downtime_ms is not None
        assert finished.transferred_bytes

        # The source's copy is left paused, and the log says so.
        assert await driver.domains("h1") == [
            DomainInfo(f"guest{MIGRATEDAWAY_SUFFIX}", "paused", 128, 1)
        ]
        notes = [e.text for e in events if isinstance(e, Note) and e.level == "error"]
        assert any("stays paused on h1" in n for n in notes), notes
        assert qemu_pids(driver.files("h2").qmp)  # h2's QEMU itself runs on
    finally:
        await hosts.close()


async def test_dest_ssh_lost_and_the_migration_failed_still_ends_with_the_event(
    tgtd: Tgtd, run_dir: Path, servers: dict[str, Sshd]
) -> None:
    """h2's SSH and its QEMU go: the migration fails, h2 cannot be cleaned up or asked."""
    image = await dirtier_image()
    key = servers["h1"].client_key
    text = qemu_lab_toml(
        hosts_toml=host_toml("h1", servers["h1"], key) + host_toml("h2", servers["h2"], key),
        tgtd=tgtd,
        image=image,
        run_dir=run_dir,
        migration_port=free_port(),
        bandwidth_mbit=40,
    )
    lab = parse_lab(text)
    events: list[Event] = []
    dropped = asyncio.Event()
    driver: QemuDriver | None = None

    def watch(event: Event) -> None:
        events.append(event)
        moving = isinstance(event, MigrationProgress) and event.transferred_bytes
        if moving and not dropped.is_set():
            assert driver is not None
            drop_ssh(servers["h2"])
            for pid in qemu_pids(driver.files("h2").qmp):  # and the incoming QEMU dies
                os.kill(pid, signal.SIGKILL)
            dropped.set()

    hosts = Hosts(lab, watch)
    try:
        assert await hosts.open(["h1", "h2"]) == {"h1": None, "h2": None}
        driver = QemuDriver(lab, {n: hosts[n] for n in ("h1", "h2")}, watch)
        offset = console_offset(Path(driver.files("h1").log))
        assert (await driver.create("h1")).changed
        await wait_for_console(
            Path(driver.files("h1").log), READY_MARKER, timeout=90, offset=offset
        )

        try:
            outcome = await driver.migrate("h1", "h2")
        except CommandFailed as exc:  # the defect: a raw transport error, nothing recorded
            pytest.fail(f"a raw CommandFailed escaped: {exc}")
        assert dropped.is_set()
        assert not outcome.ok and outcome.error is not None
        assert "h2" in outcome.error and "may still run" in outcome.error
        [finished] = [e for e in events if isinstance(e, MigrationFinished)]
        assert (finished.ok, finished.error) == (False, outcome.error)
        assert finished.guest_host == "h1"  # the source answered: the guest runs on there
        assert await driver.domains("h1") == [DomainInfo("guest", "running", 128, 1)]
    finally:
        await hosts.close()
