"""LabController.prepare against a real tgtd, real iscsi-ls and real sshds.

- A dry run on a lab whose disk was never exported plans the export and the logins
  that would follow it, without needing the export to exist (and changes nothing).
- When one host's login fails, the other host's login is stopped (and waited for)
  before prepare raises, and the error names the host that failed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from backend.config import LabConfig, parse_lab
from backend.drivers.base import DriverError, HostCommand
from backend.events import CommandFinished, CommandStarted, Event, InitiatorSession
from backend.lab import LabController
from backend.transport import LocalRunner, SshHost, SshTarget
from backend.transport.base import HostRunner
from tests.conftest import need, need_root
from tests.support.sshd import Sshd
from tests.support.tgtd import Tgtd, disk_image, storage_lab

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

IQN = "iqn.2024-01.lab.storage:disk1"


@pytest.fixture
def tgtd(tmp_path: Path) -> Iterator[Tgtd]:
    need("tgtd", "tgtadm", "iscsi-ls")
    need_root()
    server = Tgtd(tmp_path / "tgtd")
    server.start()
    yield server
    server.stop()


def qemu_lab(tgtd: Tgtd, tmp_path: Path) -> LabConfig:
    text = storage_lab(
        driver="tgt",
        portal=tgtd.portal,
        device=str(disk_image(tmp_path / "disk1.img")),
        hypervisor="qemu",
        extra_storage=f"tgt_control_port = {tgtd.control_port}\n",
        iqn=IQN,
    )
    return parse_lab(text)


@pytest.fixture
async def local() -> AsyncIterator[tuple[dict[str, HostRunner], list[Event]]]:
    events: list[Event] = []
    runners: dict[str, HostRunner] = {
        name: LocalRunner(name, events.append) for name in ("storage", "xen1", "xen2")
    }
    yield runners, events
    for runner in runners.values():
        await runner.close()


async def test_a_dry_run_on_a_never_exported_disk_plans_the_export_and_the_logins(
    tgtd: Tgtd, tmp_path: Path, local: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    runners, events = local
    lab = qemu_lab(tgtd, tmp_path)
    assert IQN not in tgtd.show()  # never exported
    controller = LabController(lab, runners, events.append)

    planned = await controller.prepare(dry_run=True)

    assert planned.dry_run and planned.changed
    adm = ["tgtadm", "-C", str(tgtd.control_port), "--lld", "iscsi"]
    assert (
        HostCommand("storage", (*adm, "--op", "new", "--mode", "target", "--tid", "1", "-T", IQN))
        in planned.commands
    )
    assert {c.host for c in planned.commands} == {"storage"}  # QEMU's initiator runs nothing
    assert IQN not in tgtd.show()  # a dry run changes nothing
    assert [e for e in events if isinstance(e, InitiatorSession)] == []
    # Only looking commands ran: tgtadm --op show, test -b/-f; no iscsi-ls of a target
    # that does not exist yet.
    ran = [e.argv for e in events if isinstance(e, CommandStarted)]
    assert all(argv[0] != "iscsi-ls" for argv in ran), ran

    # Once exported for real, the dry run checks the target from each host again.
    done = await controller.prepare()
    assert IQN in tgtd.show() and done.changed
    again = await controller.prepare(dry_run=True)
    assert again.commands == []
    checked = [e.host for e in events if isinstance(e, CommandStarted) and e.argv[0] == "iscsi-ls"]
    assert sorted(set(checked)) == ["xen1", "xen2"]


# The hosts' iscsi-ls (first on PATH through sshd's SetEnv): on xen1 one that hangs,
# as on a host whose target does not answer; on xen2 one that fails, once xen1's has
# started (so the failure comes while xen1's login is under way).
HANGING = """#!/bin/sh
echo $$ > {started}.pid
touch {started}
exec sleep 600
"""
FAILING = """#!/bin/sh
while [ ! -e {started} ]; do sleep 0.05; done
echo "iscsi-ls: no route to the portal (test)" >&2
exit 1
"""


def ssh_host(name: str, sshd: Sshd, key: Path, events: list[Event]) -> SshHost:
    target = SshTarget(
        name=name,
        address=sshd.address,
        port=sshd.port,
        user=sshd.user,
        identity=str(key),
        known_hosts=str(sshd.known_hosts),
    )
    return SshHost(target, events.append)


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[dict[str, Sshd]]:
    path = need("sshd", "ssh-keygen")["sshd"]
    started = tmp_path / "xen1-started"
    servers: dict[str, Sshd] = {}
    client_key: Path | None = None
    try:
        for name, script in (("xen1", HANGING), ("xen2", FAILING)):
            bin_dir = tmp_path / name / "bin"
            bin_dir.mkdir(parents=True)
            tool = bin_dir / "iscsi-ls"
            tool.write_text(script.format(started=started))
            tool.chmod(0o755)
            server = Sshd(
                path,
                tmp_path / name / "sshd",
                extra_config=f"SetEnv PATH={bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            server.setup(client_key)
            client_key = client_key or server.client_key
            server.start()
            servers[name] = server
        yield servers
    finally:
        for server in servers.values():
            server.stop()
        if (pid := hanging_pid(started)) is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)


def hanging_pid(started: Path) -> int | None:
    path = Path(f"{started}.pid")
    return int(path.read_text()) if path.exists() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


async def test_a_failed_login_stops_the_other_hosts_login_and_names_the_host(
    tgtd: Tgtd,
    tmp_path: Path,
    local: tuple[dict[str, HostRunner], list[Event]],
    two_hosts: dict[str, Sshd],
) -> None:
    runners, events = local
    lab = qemu_lab(tgtd, tmp_path)
    key = two_hosts["xen1"].client_key  # the one both sshds trust
    hosts = {name: ssh_host(name, server, key, events) for name, server in two_hosts.items()}
    for host in hosts.values():
        await host.connect()
    try:
        controller = LabController(lab, {**runners, **hosts}, events.append)
        with pytest.raises(DriverError) as failed:
            await controller.prepare()
        message = str(failed.value)
        assert "xen2" in message and "iscsi-ls" in message and "no route to the portal" in message
        # xen1's hanging iscsi-ls was stopped, and prepare waited for that.
        started = [
            e
            for e in events
            if isinstance(e, CommandStarted) and e.host == "xen1" and e.argv[0] == "iscsi-ls"
        ]
        assert len(started) == 1
        [ended] = [
            e for e in events if isinstance(e, CommandFinished) and e.cmd_id == started[0].cmd_id
        ]
        assert ended.exit_status is None and ended.failure is not None
        assert "cancel" in ended.failure
        # ... on the host too: its iscsi-ls is gone (waited for, not timed).
        pid = hanging_pid(tmp_path / "xen1-started")
        assert pid is not None
        while alive(pid):
            await asyncio.sleep(0.05)
    finally:
        for host in hosts.values():
            await host.close()
