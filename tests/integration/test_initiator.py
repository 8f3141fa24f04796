"""QEMU's initiator (checked with libiscsi's real iscsi-ls) against a real tgtd.

The open-iscsi flavour needs the kernel's iSCSI side, which this machine lacks; it is
tested with the fake iscsiadm in tests/unit/test_initiator_iscsiadm.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.config import LabConfig, parse_lab
from backend.drivers.base import DriverError, InitiatorSessionInfo
from backend.drivers.factories import initiator_driver, target_driver
from backend.drivers.initiator import QemuIscsiInitiator, qemu_initiator_name
from backend.events import Event, InitiatorSession
from backend.sim.tools import iscsi_ls as fake_iscsi_ls
from backend.sim.tools.iscsiadm import offer_target
from backend.transport import LocalRunner, SshHost, SshTarget
from backend.transport.base import HostRunner
from tests.conftest import need, need_root
from tests.support.sshd import Sshd, free_port
from tests.support.tgtd import Tgtd, disk_image, storage_lab

pytestmark = pytest.mark.system

IQN = "iqn.2024-01.lab.storage:disk1"
QEMU_NAME = qemu_initiator_name("guest")
SECRET = "Qemu-Chap-Secret-99"


@pytest.fixture
def tgtd(tmp_path: Path) -> Iterator[Tgtd]:
    need("tgtd", "tgtadm", "iscsi-ls")
    need_root()
    server = Tgtd(tmp_path / "tgtd")
    server.start()
    yield server
    server.stop()


def lab(
    portal: str, device: Path, control_port: int, *, chap: bool = False, lun: int = 1
) -> LabConfig:
    extra = f"tgt_control_port = {control_port}\n"
    if chap:
        extra += 'chap = { user = "miglab", secret = { env = "MIGLAB_TEST_CHAP" } }\n'
    text = storage_lab(
        driver="tgt",
        portal=portal,
        device=str(device),
        hypervisor="qemu",
        extra_storage=extra,
        lun=lun,
    )
    return parse_lab(text)


@pytest.fixture
async def hosts() -> AsyncIterator[tuple[dict[str, HostRunner], list[Event]]]:
    events: list[Event] = []
    runners: dict[str, HostRunner] = {
        name: LocalRunner(name, events.append) for name in ("storage", "xen1", "xen2")
    }
    yield runners, events
    for runner in runners.values():
        await runner.close()


async def exported(
    tgtd: Tgtd, tmp_path: Path, runners: dict[str, HostRunner], events: list[Event], **kw: bool
) -> LabConfig:
    config = lab(tgtd.portal, disk_image(tmp_path / "disk1.img"), tgtd.control_port, **kw)
    await target_driver(config, runners["storage"], events.append).export()
    return config


async def test_login_checks_the_target_answers_and_shows_the_lun(
    tgtd: Tgtd, tmp_path: Path, hosts: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    runners, events = hosts
    config = await exported(tgtd, tmp_path, runners, events)
    initiator = initiator_driver(config, runners, events.append)
    assert isinstance(initiator, QemuIscsiInitiator)
    assert initiator.device == f"iscsi://{tgtd.portal}/{IQN}/1"

    assert await initiator.discover("xen1") == [IQN]
    result = await initiator.login("xen1")
    assert not result.changed and result.commands == []  # QEMU logs in by itself
    assert "answers from xen1" in result.detail
    assert await initiator.sessions("xen2") == [
        InitiatorSessionInfo("xen2", tgtd.portal, IQN, None)
    ]
    states = [(e.host, e.state) for e in events if isinstance(e, InitiatorSession)]
    assert states == [("xen1", "logged-in")]
    logged_out = await initiator.logout("xen1")
    assert not logged_out.changed and logged_out.commands == []


async def test_login_uses_qemus_initiator_name(
    tgtd: Tgtd, tmp_path: Path, hosts: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    runners, events = hosts
    config = await exported(tgtd, tmp_path, runners, events)
    initiator = initiator_driver(config, runners, events.append)
    # Only QEMU's name may log in: the check passes, so it logged in under that name.
    tgtd.adm("--op", "unbind", "--mode", "target", "--tid", "1", "-I", "ALL")
    tgtd.adm("--op", "bind", "--mode", "target", "--tid", "1", "-Q", QEMU_NAME)
    await initiator.login("xen1")
    # Someone else's name only: the target hides from this initiator.
    tgtd.adm("--op", "unbind", "--mode", "target", "--tid", "1", "-Q", QEMU_NAME)
    tgtd.adm("--op", "bind", "--mode", "target", "--tid", "1", "-Q", "iqn.2024-01.lab.client:other")
    with pytest.raises(DriverError) as error:
        await initiator.login("xen1")
    assert str(error.value).startswith("xen1: ") and IQN in str(error.value)
    assert await initiator.sessions("xen1") == []
    assert [e.state for e in events if isinstance(e, InitiatorSession)] == ["logged-in", "failed"]


async def test_nothing_listening_is_an_error_naming_host_and_reason(
    tmp_path: Path, hosts: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    need("iscsi-ls")
    runners, events = hosts
    config = lab(f"127.0.0.1:{free_port()}", tmp_path / "unused.img", 1)
    initiator = initiator_driver(config, runners, events.append)
    with pytest.raises(DriverError) as error:
        await initiator.login("xen2")
    message = str(error.value)
    assert message.startswith("xen2: `iscsi-ls -s -i ") and "Connection refused" in message
    assert await initiator.sessions("xen2") == []
    with pytest.raises(DriverError, match="did not answer"):
        await initiator.discover("xen2")


async def test_missing_lun_is_reported(
    tgtd: Tgtd, tmp_path: Path, hosts: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    runners, events = hosts
    await exported(tgtd, tmp_path, runners, events)
    other = lab(tgtd.portal, tmp_path / "disk1.img", tgtd.control_port, lun=2)
    initiator = initiator_driver(other, runners, events.append)
    with pytest.raises(
        DriverError, match=r"xen1: .*has no LUN 2 \(LUNs: 0 \(STORAGE_ARRAY_CONTROLLER\), 1"
    ):
        await initiator.login("xen1")


async def test_chap_login_passes_the_secret_privately(
    tgtd: Tgtd,
    tmp_path: Path,
    hosts: tuple[dict[str, HostRunner], list[Event]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runners, events = hosts
    monkeypatch.setenv("MIGLAB_TEST_CHAP", SECRET)
    config = await exported(tgtd, tmp_path, runners, events, chap=True)
    initiator = initiator_driver(config, runners, events.append)
    await initiator.login("xen1")
    assert len(await initiator.sessions("xen2")) == 1

    monkeypatch.setenv("MIGLAB_TEST_CHAP", "Wrong-Secret-1")
    with pytest.raises(DriverError, match="Authentication failure"):
        await initiator.login("xen1")
    log = "\n".join(json.dumps(e.model_dump(mode="json")) for e in events)
    assert SECRET not in log and "Wrong-Secret-1" not in log


async def test_login_over_ssh(
    tgtd: Tgtd, tmp_path: Path, sshd: Sshd, hosts: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    runners, events = hosts
    config = await exported(tgtd, tmp_path, runners, events)
    ssh = SshHost(
        SshTarget(
            name="xen1",
            address=sshd.address,
            port=sshd.port,
            user=sshd.user,
            identity=str(sshd.client_key),
            known_hosts=str(sshd.known_hosts),
        ),
        events.append,
    )
    await ssh.connect()
    try:
        initiator = initiator_driver(config, {**runners, "xen1": ssh}, events.append)
        await initiator.login("xen1")
        assert [s.iqn for s in await initiator.sessions("xen1")] == [IQN]
    finally:
        await ssh.close()


async def test_fake_iscsi_ls_answers_like_the_real_one(
    tgtd: Tgtd, tmp_path: Path, hosts: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    """The simulated lab's iscsi-ls (backend.sim.tools.iscsi_ls) against the real one."""
    runners, events = hosts
    await exported(tgtd, tmp_path, runners, events)
    state: dict[str, Any] = {}
    offer_target(state, tgtd.portal, IQN, [(0, False), (1, True)], size_bytes=64 << 20)

    async def both(*args: str) -> None:
        real = await asyncio.to_thread(
            subprocess.run, ["iscsi-ls", *args], capture_output=True, text=True, timeout=20
        )
        assert fake_iscsi_ls.run(["iscsi-ls", *args], state) == (
            real.returncode,
            real.stdout,
            real.stderr,
        )

    await both("-s", f"iscsi://{tgtd.portal}/")
    await both(f"iscsi://{tgtd.portal}/")
    await both("--url", f"iscsi://{tgtd.portal}/")
    await both("-s", f"iscsi://127.0.0.1:{free_port()}/")  # nothing listens: refused

    tgtd.adm("--op", "new", "--mode", "account", "--user", "miglab", "--password", SECRET)
    tgtd.adm("--op", "bind", "--mode", "account", "--tid", "1", "--user", "miglab")
    offer_target(state, tgtd.portal, IQN, [(0, False), (1, True)], chap=("miglab", SECRET))
    await both("-s", f"iscsi://{tgtd.portal}/")  # no credentials: login refused
    await both("-s", f"iscsi://miglab%{SECRET}@{tgtd.portal}/")
