"""The tgt target driver against a real tgtd, locally and over SSH to a real sshd."""

from __future__ import annotations

import asyncio
import glob
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from backend.config import parse_lab
from backend.drivers.base import DriverError, OperationResult, Refused, TargetStatus
from backend.drivers.factories import target_driver
from backend.drivers.parse_tgt import parse_show_account, parse_show_target
from backend.drivers.target_tgt import TgtDriver
from backend.events import CommandStarted, Event, StorageExported, StorageUnexported
from backend.transport import LocalRunner, SshHost, SshTarget
from backend.transport.base import HostRunner
from tests.conftest import need, need_root
from tests.support.sshd import Sshd
from tests.support.tgtd import Session, Tgtd, disk_image, storage_lab

pytestmark = pytest.mark.system

IQN = "iqn.2024-01.lab.storage:disk1"
XEN1 = "iqn.2024-01.lab.client:xen1"
SECRET = "Chap-Secret-4711"


@pytest.fixture
def tgtd(tmp_path: Path) -> Iterator[Tgtd]:
    need("tgtd", "tgtadm", "iscsi-ls", "iscsi-perf")
    need_root()
    server = Tgtd(tmp_path / "tgtd")
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "ssh"])
async def runner(
    request: pytest.FixtureRequest, sshd: Sshd
) -> AsyncIterator[tuple[HostRunner, list[Event]]]:
    events: list[Event] = []
    host: HostRunner
    if request.param == "local":
        host = LocalRunner("storage", events.append)
    else:
        ssh = SshHost(
            SshTarget(
                name="storage",
                address=sshd.address,
                port=sshd.port,
                user=sshd.user,
                identity=str(sshd.client_key),
                known_hosts=str(sshd.known_hosts),
            ),
            events.append,
        )
        await ssh.connect()
        host = ssh
    yield host, events
    await host.close()


def make_driver(
    tgtd: Tgtd, device: Path, runner: HostRunner, events: list[Event], *, chap: bool = False
) -> TgtDriver:
    extra = f"tgt_control_port = {tgtd.control_port}\n"
    if chap:
        extra += 'chap = { user = "miglab", secret = { env = "MIGLAB_TEST_CHAP" } }\n'
    lab = parse_lab(
        storage_lab(driver="tgt", portal=tgtd.portal, device=str(device), extra_storage=extra)
    )
    driver = target_driver(lab, runner, events.append)
    assert isinstance(driver, TgtDriver)
    return driver


def argvs(result: OperationResult) -> list[list[str]]:
    assert all(c.host == "storage" for c in result.commands)
    return [list(c.argv) for c in result.commands]


async def iscsi_ls(url: str) -> subprocess.CompletedProcess[str]:
    """A real login with libiscsi, as QEMU's initiator would make it."""
    argv = ["iscsi-ls", "-s", url]
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=20)


async def wait_for_initiator(driver: TgtDriver, initiator: str) -> TargetStatus:
    """Once tgtd lists ``initiator`` (no deadline: a hang is the test's timeout)."""
    while True:
        status = await driver.status()
        found = status.find(IQN)
        if found is not None and initiator in found.initiators:
            return status
        await asyncio.sleep(0.1)


async def test_export_twice_is_one_export(
    tgtd: Tgtd, tmp_path: Path, runner: tuple[HostRunner, list[Event]]
) -> None:
    host, events = runner
    device = disk_image(tmp_path / "disk1.img")
    driver = make_driver(tgtd, device, host, events)
    adm = ["tgtadm", "-C", str(tgtd.control_port), "--lld", "iscsi"]

    first = await driver.export()
    assert first.changed and not first.dry_run
    assert argvs(first) == [
        [*adm, "--op", "new", "--mode", "target", "--tid", "1", "-T", IQN],
        [
            *adm,
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            str(device),
        ],
        [*adm, "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"],
    ]
    [target] = parse_show_target(tgtd.show())
    assert (target.tid, target.iqn, target.acls) == (1, IQN, ("ALL",))
    assert [(lun.lun, lun.backing_store_path) for lun in target.data_luns] == [(1, str(device))]

    second = await driver.export()
    assert not second.changed and second.commands == []
    assert "already exported" in second.detail
    assert [e.changed for e in events if isinstance(e, StorageExported)] == [True, False]

    status = await driver.status()
    info = status.find(IQN)
    assert info is not None and info.tid == 1 and info.initiators == ()
    [lun] = info.luns
    assert lun.lun == 1 and lun.backing == str(device)
    assert lun.size_bytes is not None and abs(lun.size_bytes - (64 << 20)) < 1_000_000

    # Every tgtadm call went to this test's tgtd instance.
    calls = [e.argv for e in events if isinstance(e, CommandStarted) and e.argv[0] == "tgtadm"]
    assert calls and all(argv[1:3] == ["-C", str(tgtd.control_port)] for argv in calls)


async def test_dry_run_lists_the_exact_commands_and_changes_nothing(
    tgtd: Tgtd, tmp_path: Path
) -> None:
    events: list[Event] = []
    driver = make_driver(
        tgtd, disk_image(tmp_path / "d.img"), LocalRunner("storage", events.append), events
    )

    plan = await driver.export(dry_run=True)
    assert plan.dry_run and plan.changed and len(plan.commands) == 3
    assert tgtd.show() == ""  # nothing was created
    assert not any(isinstance(e, StorageExported) for e in events)
    mutating = [e for e in events if isinstance(e, CommandStarted) and "new" in e.argv]
    assert mutating == []

    done = await driver.export()
    assert done.commands == plan.commands  # the plan was exactly what a real run does

    unplan = await driver.unexport(dry_run=True)
    assert argvs(unplan) == [
        [
            "tgtadm",
            "-C",
            str(tgtd.control_port),
            "--lld",
            "iscsi",
            "--op",
            "delete",
            "--mode",
            "target",
            "--tid",
            "1",
        ]
    ]
    assert parse_show_target(tgtd.show())  # still exported
    assert (await driver.unexport()).commands == unplan.commands
    assert tgtd.show() == ""


async def test_connected_initiator_shows_and_blocks_unexport_unless_forced(
    tgtd: Tgtd, tmp_path: Path, runner: tuple[HostRunner, list[Event]]
) -> None:
    host, events = runner
    driver = make_driver(tgtd, disk_image(tmp_path / "disk1.img"), host, events)
    await driver.export()
    with Session(f"iscsi://{tgtd.portal}/{IQN}/1", XEN1):
        status = await wait_for_initiator(driver, XEN1)
        assert status.find(IQN) is not None

        with pytest.raises(Refused) as refused:
            await driver.unexport()
        assert XEN1 in str(refused.value) and "127.0.0.1" in str(refused.value)
        assert "storage" in str(refused.value)
        assert parse_show_target(tgtd.show())[0].initiators == (XEN1,)  # untouched

        forced = await driver.unexport(force=True)
        adm = ["tgtadm", "-C", str(tgtd.control_port), "--lld", "iscsi"]
        assert forced.changed and argvs(forced) == [
            [
                *adm,
                "--op",
                "update",
                "--mode",
                "target",
                "--tid",
                "1",
                "-n",
                "state",
                "-v",
                "offline",
            ],
            [*adm, "--op", "delete", "--mode", "target", "--tid", "1", "--force"],
        ]
        assert tgtd.show() == ""
    [gone] = [e for e in events if isinstance(e, StorageUnexported)]
    assert gone.forced and gone.iqn == IQN and gone.initiators == [f"{XEN1} (127.0.0.1)"]

    again = await driver.unexport()
    assert not again.changed and again.commands == []


async def test_existing_target_with_other_backing_is_reported_not_replaced(
    tgtd: Tgtd, tmp_path: Path
) -> None:
    device = disk_image(tmp_path / "disk1.img")
    other = disk_image(tmp_path / "someone-elses.img")
    tgtd.adm("--op", "new", "--mode", "target", "--tid", "3", "-T", IQN)
    tgtd.adm("--op", "new", "--mode", "logicalunit", "--tid", "3", "--lun", "1", "-b", str(other))
    before = tgtd.show()
    events: list[Event] = []
    driver = make_driver(tgtd, device, LocalRunner("storage", events.append), events)
    with pytest.raises(DriverError) as error:
        await driver.export()
    message = str(error.value)
    assert str(other) in message and str(device) in message and "tid 3" in message
    assert tgtd.show() == before


async def test_missing_device_and_missing_daemon_are_clear_errors(
    tgtd: Tgtd, tmp_path: Path
) -> None:
    events: list[Event] = []
    local = LocalRunner("storage", events.append)
    driver = make_driver(tgtd, tmp_path / "nope.img", local, events)
    with pytest.raises(DriverError, match=r"storage: .*nope\.img does not exist"):
        await driver.export()
    assert tgtd.show() == ""

    tgtd.stop()
    with pytest.raises(DriverError) as error:
        await driver.status()
    message = str(error.value)
    assert message.startswith("storage: `tgtadm -C") and "control port" in message
    assert "Transport endpoint is not connected" in message  # tgtadm's own stderr


async def test_chap_export_never_logs_the_secret(
    tgtd: Tgtd,
    tmp_path: Path,
    runner: tuple[HostRunner, list[Event]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host, events = runner
    monkeypatch.setenv("MIGLAB_TEST_CHAP", SECRET)
    leftovers = set(glob.glob("/tmp/miglab.*"))
    driver = make_driver(tgtd, disk_image(tmp_path / "disk1.img"), host, events, chap=True)

    first = await driver.export()
    adm = ["tgtadm", "-C", str(tgtd.control_port), "--lld", "iscsi"]
    assert argvs(first)[0] == [
        *adm,
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        "miglab",
        "--password",
        "***",
    ]
    assert argvs(first)[3:] == [
        [*adm, "--op", "bind", "--mode", "account", "--tid", "1", "--user", "miglab"],
        [*adm, "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"],  # access last
    ]
    assert parse_show_account(tgtd.adm("--op", "show", "--mode", "account").stdout) == ["miglab"]
    [target] = parse_show_target(tgtd.show())
    assert [a.user for a in target.accounts] == ["miglab"]

    # The target now wants CHAP: a real login without it fails, with it succeeds.
    url = f"iscsi://{tgtd.portal}/"
    anonymous = await iscsi_ls(url)
    assert anonymous.returncode != 0 and "Authentication failure" in anonymous.stdout
    chap_url = f"iscsi://miglab%{SECRET}@{tgtd.portal}/"
    signed = await iscsi_ls(chap_url)
    assert signed.returncode == 0 and "Lun:1" in signed.stdout

    second = await driver.export()
    assert not second.changed
    plain = make_driver(tgtd, Path(target.data_luns[0].backing_store_path or ""), host, events)
    before = tgtd.show()
    with pytest.raises(DriverError, match="requires CHAP \\(account miglab\\)"):
        await plain.export()  # a lab without [storage] chap would lock its hosts out
    assert tgtd.show() == before

    gone = await driver.unexport()
    assert ["--op", "delete", "--mode", "account", "--user", "miglab"] == argvs(gone)[-1][-6:]
    assert parse_show_account(tgtd.adm("--op", "show", "--mode", "account").stdout) == []

    log = "\n".join(json.dumps(e.model_dump(mode="json")) for e in events)
    assert SECRET not in log
    assert SECRET not in repr(first) + repr(second) + repr(gone)
    assert set(glob.glob("/tmp/miglab.*")) == leftovers  # the secret's file is gone
