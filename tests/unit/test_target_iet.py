"""The IET target driver, through LocalRunner against the fake ietadm on PATH.

IET's kernel module cannot load here; backend.sim.tools.ietadm plays ietadm and writes
the /proc/net/iet files the driver reads into a temporary directory. ietd.conf is a
real file the driver edits through the runner.
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
from backend.drivers.parse_iet import (
    parse_ietd_conf,
    parse_proc_session,
    parse_proc_volume,
)
from backend.drivers.remote import PUT_FILE
from backend.drivers.target_iet import IetDriver
from backend.events import Event, StorageExported, StorageUnexported
from backend.sim.tools import add_device
from backend.sim.tools import ietadm as fake
from backend.transport import LocalRunner
from tests.conftest import DATA
from tests.support.fake_tools import STATE_ENV, load_state, save_state
from tests.support.fake_tools.ietadm import PROC_ENV
from tests.support.tgtd import install_fakes, storage_lab

IQN = "iqn.2024-01.lab.storage:disk1"
DEVICE = "/dev/vg0/guest"
XEN1 = "iqn.2024-01.lab.client:xen1"
SECRET = "Iet-Chap-Secret-3"


def run(state: dict[str, Any], *args: str) -> tuple[int, str, str]:
    return fake.run(["ietadm", *args], state)


# --- the fake's formats --------------------------------------------------------------------


def test_fake_proc_files_parse_and_errors_follow_ietadm() -> None:
    state: dict[str, Any] = {}
    add_device(state, DEVICE, 10 << 30, block=True)
    add_device(state, "/srv/scratch.img", 1 << 30, block=False)
    assert run(state, "--op", "new", "--tid=1", "--params", f"Name={IQN}") == (0, "", "")
    assert run(
        state, "--op", "new", "--tid=1", "--lun=0", "--params", f"Path={DEVICE},Type=blockio"
    ) == (0, "", "")
    assert (
        run(state, "--op", "new", "--tid=0", "--params", "Name=iqn.2024-01.lab.storage:scratch")[0]
        == 0
    )
    assert (
        run(state, "--op", "new", "--tid=2", "--lun=0", "--params", "Path=/srv/scratch.img")[0] == 0
    )
    fake.login(state, IQN, XEN1, "198.18.0.11")

    scratch, disk1 = parse_proc_volume(fake.render_proc_volume(state))  # newest first, as IET
    assert (disk1.tid, disk1.name, disk1.luns[0].iotype, disk1.luns[0].size_bytes) == (
        1,
        IQN,
        "blockio",
        10 << 30,
    )
    assert (scratch.tid, scratch.luns[0].iotype, scratch.luns[0].path) == (
        2,
        "fileio",
        "/srv/scratch.img",
    )
    idle, busy = parse_proc_session(fake.render_proc_session(state))
    assert idle.sessions == () and busy.initiators == (XEN1,)
    assert busy.sessions[0].connections[0].ip == "198.18.0.11"

    # ietd refuses: "ietd_request <line> <request> <-errno>", exit -errno.
    assert run(state, "--op", "new", "--tid=1", "--params", f"Name={IQN}") == (
        -17,
        "",
        "ietd_request 203 0 -17\n",
    )
    assert run(state, "--op", "delete", "--tid=1") == (-16, "", "ietd_request 203 1 -16\n")
    assert run(state, "--op", "new", "--tid=9", "--lun=0", "--params", f"Path={DEVICE}")[0] == -2
    code, out, err = run(state, "--frob")
    assert (code % 256, out) == (255, "")
    assert (
        err == "ietadm: unrecognized option '--frob'\nTry `ietadm --help' for more information.\n"
    )
    assert run(state, "--tid=1") == (-22, "", "You must specify the operation type\n")


# --- the driver ----------------------------------------------------------------------------


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = install_fakes(tmp_path / "bin", "ietadm", "test")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv(PROC_ENV, str(tmp_path / "proc"))
    path = tmp_path / "storage.json"
    state: dict[str, Any] = {}
    add_device(state, DEVICE, 10 << 30, block=True)
    add_device(state, "/srv/other.img", 1 << 30, block=False)
    save_state(path, state)
    monkeypatch.setenv(STATE_ENV, str(path))
    (tmp_path / "proc").mkdir()  # ietd is loaded, with no targets yet
    (tmp_path / "proc" / "volume").write_text("")
    (tmp_path / "proc" / "session").write_text("")
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
    iqn: str = IQN,
    device: str = DEVICE,
    chap: bool = False,
) -> IetDriver:
    local, events = runner
    extra = 'chap = { user = "miglab", secret = { env = "MIGLAB_TEST_CHAP" } }\n' if chap else ""
    lab = parse_lab(
        storage_lab(
            driver="iet", portal="198.18.0.1:3260", device=device, iqn=iqn, extra_storage=extra
        )
    )
    assert isinstance(target_driver(lab, local, events.append), IetDriver)
    return IetDriver(
        lab.storage,
        local,
        events.append,
        conf_path=str(tmp_path / "ietd.conf"),
        proc_dir=str(tmp_path / "proc"),
    )


def argvs(result: OperationResult) -> list[list[str]]:
    return [list(c.argv) for c in result.commands]


def log_of(events: list[Event]) -> str:
    return "\n".join(json.dumps(e.model_dump(mode="json")) for e in events)


async def test_export_twice_is_one_export_and_ietd_conf_keeps_it(
    host: Path, tmp_path: Path, runner: tuple[LocalRunner, list[Event]]
) -> None:
    iet = driver(tmp_path, runner)
    first = await iet.export()
    assert first.changed
    assert argvs(first)[:2] == [
        ["ietadm", "--op", "new", "--tid=1", "--params", f"Name={IQN}"],
        ["ietadm", "--op", "new", "--tid=1", "--lun=1", "--params", f"Path={DEVICE},Type=blockio"],
    ]
    assert argvs(first)[2][:4] == ["sh", "-c", argvs(first)[2][2], "miglab-write"]
    conf = parse_ietd_conf((tmp_path / "ietd.conf").read_text())
    block = conf.target(IQN)
    assert block is not None and [(x.lun, x.path, x.type) for x in block.luns] == [
        (1, DEVICE, "blockio")
    ]
    assert oct((tmp_path / "ietd.conf").stat().st_mode & 0o777) == "0o600"

    second = await iet.export()
    assert not second.changed and second.commands == []
    _, events = runner
    assert [e.changed for e in events if isinstance(e, StorageExported)] == [True, False]

    info = (await iet.status()).find(IQN)
    assert info is not None and info.tid == 1 and info.initiators == ()
    assert [(x.lun, x.backing, x.size_bytes) for x in info.luns] == [(1, DEVICE, 10 << 30)]


async def test_dry_run_is_the_real_plan_and_changes_nothing(
    host: Path, tmp_path: Path, runner: tuple[LocalRunner, list[Event]]
) -> None:
    iet = driver(tmp_path, runner, device="/srv/other.img")
    plan = await iet.export(dry_run=True)
    assert load_state(host).get("iet", {}).get("targets", []) == []
    assert not (tmp_path / "ietd.conf").exists()
    done = await iet.export()
    assert done.commands == plan.commands
    assert argvs(done)[1][-1] == "Path=/srv/other.img,Type=fileio"


async def test_hand_written_conf_with_passwords_is_kept_and_never_logged(
    host: Path, tmp_path: Path, runner: tuple[LocalRunner, list[Event]]
) -> None:
    original = (DATA / "iet" / "ietd.conf").read_text()
    (tmp_path / "ietd.conf").write_text(original)
    iet = driver(tmp_path, runner, iqn="iqn.2024-01.lab.storage:disk3", device="/srv/other.img")
    result = await iet.export()
    # The file holds CHAP passwords, so it went over the private channel both ways.
    assert argvs(result)[-1] == [PUT_FILE, "--mode=0600", str(tmp_path / "ietd.conf")]
    text = (tmp_path / "ietd.conf").read_text()
    assert text.startswith(original)  # everything before stays byte for byte
    assert parse_ietd_conf(text).target("iqn.2024-01.lab.storage:disk3") is not None
    _, events = runner
    log = log_of(events)
    for secret in ("discovery-secret1", "lab-chap-secret", "lab-mutual-secret"):
        assert secret not in log


async def test_other_backing_is_refused(
    host: Path, tmp_path: Path, runner: tuple[LocalRunner, list[Event]]
) -> None:
    await driver(tmp_path, runner, device="/srv/other.img").export()
    before = load_state(host)
    with pytest.raises(DriverError) as error:
        await driver(tmp_path, runner).export()
    assert "LUN 1 on /srv/other.img" in str(error.value) and DEVICE in str(error.value)
    assert load_state(host) == before


async def test_sessions_block_unexport_unless_forced(
    host: Path, tmp_path: Path, runner: tuple[LocalRunner, list[Event]]
) -> None:
    iet = driver(tmp_path, runner)
    await iet.export()
    state = load_state(host)
    sid = fake.login(state, IQN, XEN1, "198.18.0.11")
    save_state(host, state)
    (tmp_path / "proc" / "session").write_text(fake.render_proc_session(state))

    info = (await iet.status()).find(IQN)
    assert info is not None and info.initiators == (XEN1,)
    with pytest.raises(Refused, match=rf"storage: {IQN} is in use by {XEN1} \(198.18.0.11\)"):
        await iet.unexport()

    gone = await iet.unexport(force=True)
    assert argvs(gone)[:2] == [
        ["ietadm", "--op", "delete", "--tid=1", f"--sid={sid}", "--cid=0"],
        ["ietadm", "--op", "delete", "--tid=1"],
    ]
    assert load_state(host)["iet"]["targets"] == []
    assert parse_ietd_conf((tmp_path / "ietd.conf").read_text()).target(IQN) is None
    _, events = runner
    [event] = [e for e in events if isinstance(e, StorageUnexported)]
    assert event.forced and event.initiators == [f"{XEN1} (198.18.0.11)"]
    assert not (await iet.unexport()).changed


async def test_chap_user_reaches_ietd_and_conf_without_being_logged(
    host: Path,
    tmp_path: Path,
    runner: tuple[LocalRunner, list[Event]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIGLAB_TEST_CHAP", SECRET)
    iet = driver(tmp_path, runner, chap=True)
    first = await iet.export()
    assert [
        "ietadm",
        "--op",
        "new",
        "--tid=1",
        "--user",
        "--params=IncomingUser=miglab,Password=***",
    ] in argvs(first)
    [target] = load_state(host)["iet"]["targets"]
    assert target["users"] == [{"dir": "incoming", "user": "miglab", "password": SECRET}]
    block = parse_ietd_conf((tmp_path / "ietd.conf").read_text()).target(IQN)
    assert block is not None and [(u.user, u.password) for u in block.incoming_users] == [
        ("miglab", SECRET)
    ]

    second = await iet.export()
    assert not second.changed

    monkeypatch.setenv("MIGLAB_TEST_CHAP", "Rotated-Secret-4")
    rotated = await iet.export()
    assert [
        "ietadm",
        "--op",
        "delete",
        "--tid=1",
        "--user",
        "--params=IncomingUser=miglab",
    ] in argvs(rotated)
    [target] = load_state(host)["iet"]["targets"]
    assert target["users"][0]["password"] == "Rotated-Secret-4"
    _, events = runner
    log = log_of(events)
    assert SECRET not in log and "Rotated-Secret-4" not in log


async def test_no_python3_on_the_host_is_a_clear_error(
    host: Path,
    tmp_path: Path,
    runner: tuple[LocalRunner, list[Event]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A storage host without python3: the private channel for the secret cannot open.
    missing = tmp_path / "bin" / "python3"
    missing.write_text("#!/bin/sh\necho 'sh: 1: python3: not found' >&2\nexit 127\n")
    missing.chmod(0o755)
    monkeypatch.setenv("MIGLAB_TEST_CHAP", SECRET)
    with pytest.raises(DriverError) as error:
        await driver(tmp_path, runner, chap=True).export()
    message = str(error.value)
    assert message.startswith("storage: the python3 helper") and "exit status 127" in message
    assert "python3: not found" in message and "need python3 on that host" in message
    assert load_state(host).get("iet", {}).get("targets", []) == []  # failed before acting
