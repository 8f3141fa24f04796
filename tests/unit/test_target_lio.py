"""The LIO target driver, through LocalRunner against the fake targetcli on PATH.

LIO needs the kernel's configfs, which this machine lacks; backend.sim.tools.targetcli
plays targetcli (and writes the configfs ``dynamic_sessions`` files the driver reads).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.config import parse_lab
from backend.drivers.base import DriverError, OperationResult, Refused
from backend.drivers.factories import target_driver
from backend.drivers.parse_targetcli import parse_targetcli_ls
from backend.drivers.target_lio import LioDriver, parse_sessions
from backend.events import CommandFinished, Event, StorageExported, StorageUnexported
from backend.sim.tools import add_device
from backend.sim.tools import targetcli as fake
from backend.transport import LocalRunner
from tests.support.fake_tools import STATE_ENV, load_state, save_state
from tests.support.fake_tools.targetcli import CONFIGFS_ENV
from tests.support.tgtd import install_fakes, storage_lab

IQN = "iqn.2024-01.lab.storage:disk1"
DEVICE = "/dev/vg0/guest"
TPG = f"/iscsi/{IQN}/tpg1"
XEN1 = "iqn.2024-01.lab.client:xen1"
XEN2 = "iqn.2024-01.lab.client:xen2"
SECRET = "Lio-Chap-Secret-5"


def run(state: dict[str, Any], *args: str) -> tuple[int, str, str]:
    return fake.run(["targetcli", *args], state)


# --- the fake's formats --------------------------------------------------------------------


def test_fake_tree_and_sessions_parse_with_the_drivers_parsers() -> None:
    state: dict[str, Any] = {}
    add_device(state, DEVICE, 10 << 30, block=True)
    assert run(state, "/backstores/block", "create", "name=disk1", f"dev={DEVICE}")[0] == 0
    assert run(state, "/iscsi", "create", IQN)[0] == 0
    assert run(state, f"{TPG}/luns", "create", "/backstores/block/disk1")[:2] == (
        0,
        "Created LUN 0.\n",
    )
    assert (
        run(state, f"{TPG}/acls", "create", XEN1)[1]
        == f"Created Node ACL for {XEN1}\nCreated mapped LUN 0.\n"
    )
    config = parse_targetcli_ls(run(state, "ls")[1])
    [so] = config.storage_objects
    assert (so.plugin, so.name, so.path, so.size_bytes, so.activated) == (
        "block",
        "disk1",
        DEVICE,
        10 << 30,
        True,
    )
    target = config.target(IQN)
    assert target is not None
    [tpg] = target.tpgs
    assert tpg.flags == ("no-gen-acls", "no-auth") and tpg.initiators() == (XEN1,)
    assert [(p.address, p.port) for p in tpg.portals] == [("0.0.0.0", 3260)]
    assert [(x.lun, x.path) for x in tpg.luns] == [(0, DEVICE)]
    assert parse_targetcli_ls(run(state, "ls", "/iscsi")[1]).target(IQN) == target

    assert run(state, "sessions") == (0, "(no open sessions)\n", "")
    fake.login(state, IQN, XEN1, "198.18.0.11")
    [session] = parse_sessions(run(state, "sessions", "detail")[1])
    assert (session.initiator, session.addresses, session.backstores) == (
        XEN1,
        ("198.18.0.11",),
        ("block/disk1",),
    )


def test_fake_errors_follow_targetcli() -> None:
    state: dict[str, Any] = {}
    assert run(state, "/iscsi", "create", IQN)[0] == 0
    assert run(state, "/iscsi", "create", IQN) == (
        1,
        "",
        "This Target already exists in configFS\n",
    )
    assert run(state, "/nowhere", "ls") == (1, "", "No such path /nowhere\n")
    assert run(state, "frobnicate") == (1, "", "Command not found frobnicate\n")
    code, out, err = run(state, "--help")
    assert (code % 256, out) == (255, "") and err.startswith(
        "Usage: targetcli [--version|--help|CMD"
    )
    assert run(state, "/backstores/block", "create", "name=x", "dev=/dev/nope")[0] == 1
    assert run(state, "/backstores/fileio", "create", "name=x", "file_or_dev=/srv/new.img") == (
        1,
        "",
        "Attempting to create file for new fileio backstore, need a size\n",
    )


# --- the driver ----------------------------------------------------------------------------


@pytest.fixture
def state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = install_fakes(tmp_path / "bin", "targetcli", "test")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv(CONFIGFS_ENV, str(tmp_path / "configfs"))
    path = tmp_path / "storage.json"
    state: dict[str, Any] = {}
    add_device(state, DEVICE, 10 << 30, block=True)
    add_device(state, "/srv/other.img", 1 << 30, block=False)
    save_state(path, state)
    monkeypatch.setenv(STATE_ENV, str(path))
    return path


@pytest.fixture
async def runner() -> AsyncIterator[tuple[LocalRunner, list[Event]]]:
    events: list[Event] = []
    local = LocalRunner("storage", events.append)
    yield local, events
    await local.close()


def driver(
    tmp_path: Path,
    runner: tuple[LocalRunner, list[Event]],
    *,
    portal: str = "198.18.0.1:3260",
    chap: bool = False,
) -> LioDriver:
    local, events = runner
    extra = 'chap = { user = "miglab", secret = { env = "MIGLAB_TEST_CHAP" } }\n' if chap else ""
    lab = parse_lab(storage_lab(driver="lio", portal=portal, device=DEVICE, extra_storage=extra))
    made = target_driver(lab, local, events.append)
    assert isinstance(made, LioDriver)
    return LioDriver(lab.storage, local, events.append, configfs=str(tmp_path / "configfs"))


def argvs(result: OperationResult) -> list[list[str]]:
    return [list(c.argv) for c in result.commands]


async def test_export_twice_is_one_export_and_is_saved(
    state_file: Path, tmp_path: Path, runner: tuple[LocalRunner, list[Event]]
) -> None:
    lio = driver(tmp_path, runner)
    first = await lio.export()
    assert first.changed and argvs(first) == [
        ["targetcli", "/backstores/block", "create", "name=miglab_disk1", f"dev={DEVICE}"],
        ["targetcli", "/iscsi", "create", IQN],
        ["targetcli", f"{TPG}/luns", "create", "/backstores/block/miglab_disk1", "lun=1"],
        [
            "targetcli",
            TPG,
            "set",
            "attribute",
            "generate_node_acls=1",
            "demo_mode_write_protect=0",
            "cache_dynamic_acls=1",
        ],
        ["targetcli", "saveconfig"],
    ]
    lio_state = load_state(state_file)["lio"]
    assert lio_state["saved"]["targets"] == lio_state["targets"]  # survives a reboot
    assert lio_state["targets"][0]["tpgs"][0]["attributes"]["demo_mode_write_protect"] == 0

    second = await lio.export()
    assert not second.changed and second.commands == []
    _, events = runner
    assert [e.changed for e in events if isinstance(e, StorageExported)] == [True, False]

    status = await lio.status()
    info = status.find(IQN)
    assert info is not None and info.initiators == ()
    [lun] = info.luns
    assert (lun.lun, lun.backing, lun.size_bytes) == (1, DEVICE, 10 << 30)


async def test_dry_run_is_the_real_plan_and_changes_nothing(
    state_file: Path, tmp_path: Path, runner: tuple[LocalRunner, list[Event]]
) -> None:
    lio = driver(tmp_path, runner, portal="198.18.0.1:3261")
    plan = await lio.export(dry_run=True)
    assert load_state(state_file).get("lio", {}).get("targets", []) == []
    assert ["targetcli", f"{TPG}/portals", "create", "198.18.0.1", "3261"] in argvs(plan)
    done = await lio.export()
    assert done.commands == plan.commands
    [tpg] = load_state(state_file)["lio"]["targets"][0]["tpgs"]
    assert {"ip": "198.18.0.1", "port": 3261} in tpg["portals"]


async def test_file_backed_disk_uses_fileio_and_other_backing_is_refused(
    state_file: Path,
    tmp_path: Path,
    runner: tuple[LocalRunner, list[Event]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local, events = runner
    lab = parse_lab(storage_lab(driver="lio", portal="198.18.0.1:3260", device="/srv/other.img"))
    first = await LioDriver(lab.storage, local, events.append, configfs=str(tmp_path)).export()
    assert argvs(first)[0] == [
        "targetcli",
        "/backstores/fileio",
        "create",
        "name=miglab_disk1",
        "file_or_dev=/srv/other.img",
    ]
    with pytest.raises(DriverError) as error:
        await driver(tmp_path, runner).export()
    assert "LUN 1 on /srv/other.img" in str(error.value) and DEVICE in str(error.value)


async def test_sessions_block_unexport_unless_forced(
    state_file: Path, tmp_path: Path, runner: tuple[LocalRunner, list[Event]]
) -> None:
    lio = driver(tmp_path, runner)
    await lio.export()
    # xen1 through an explicit ACL (targetcli lists it), xen2 in demo mode (configfs only).
    state = load_state(state_file)
    assert fake.run(["targetcli", f"{TPG}/acls", "create", XEN1], state)[0] == 0
    fake.login(state, IQN, XEN1, "198.18.0.11")
    fake.login(state, IQN, XEN2, "198.18.0.12")
    save_state(state_file, state)
    for relative, text in fake.configfs_files(state).items():
        (tmp_path / "configfs" / relative).write_text(text)

    info = (await lio.status()).find(IQN)
    assert info is not None and sorted(info.initiators) == [XEN1, XEN2]
    with pytest.raises(Refused) as refused:
        await lio.unexport()
    assert (
        XEN1 in str(refused.value)
        and XEN2 in str(refused.value)
        and "198.18.0.11" in str(refused.value)
    )

    gone = await lio.unexport(force=True)
    assert argvs(gone) == [
        ["targetcli", "/iscsi", "delete", IQN],
        ["targetcli", "/backstores/block", "delete", "miglab_disk1"],
        ["targetcli", "saveconfig"],
    ]
    lio_state = load_state(state_file)["lio"]
    assert (
        lio_state["targets"] == []
        and lio_state["storage_objects"] == []
        and lio_state["sessions"] == []
    )
    _, events = runner
    [event] = [e for e in events if isinstance(e, StorageUnexported)]
    assert event.forced and len(event.initiators) == 2
    assert not (await lio.unexport()).changed


async def test_chap_goes_in_without_being_logged(
    state_file: Path,
    tmp_path: Path,
    runner: tuple[LocalRunner, list[Event]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIGLAB_TEST_CHAP", SECRET)
    lio = driver(tmp_path, runner, chap=True)
    first = await lio.export()
    assert ["targetcli", TPG, "set", "attribute", "authentication=1"] in argvs(first)
    assert ["targetcli", TPG, "set", "auth", "userid=miglab", "password=***"] in argvs(first)
    tpg = load_state(state_file)["lio"]["targets"][0]["tpgs"][0]
    assert tpg["auth"]["userid"] == "miglab" and tpg["auth"]["password"] == SECRET
    config = parse_targetcli_ls(fake.run(["targetcli", "ls"], load_state(state_file))[1])
    target = config.target(IQN)
    assert target is not None and "tpg-auth" in target.tpgs[0].flags

    second = await lio.export()
    assert not second.changed
    _, events = runner
    log = "\n".join(json.dumps(e.model_dump(mode="json")) for e in events)
    assert SECRET not in log
    # targetcli echoes "Parameter password is now '...'": that stdout was dropped.
    finished = [e for e in events if isinstance(e, CommandFinished)]
    assert not any(
        "is now" in line and "password" in line for e in finished for line in e.stdout_tail
    )
