"""The simulated storage node's tgtadm against real tgtadm 1.0.85 (tests/data/tgt).

Each command is the one capture.sh ran; the fake's stdout, stderr and exit status must
be the capture's, byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.drivers.parse_tgt import parse_show_target
from backend.sim.tools import add_device, tgtadm

DATA = Path(__file__).resolve().parents[1] / "data" / "tgt"
WORK = "/tmp/miglab-parse-capture"
IQN1, IQN2 = "iqn.2024-01.lab.storage:disk1", "iqn.2024-01.lab.storage:disk2"
XEN1, XEN2 = "iqn.2024-01.lab.client:xen1", "iqn.2024-01.lab.client:xen2"
EXIT = dict(line.split() for line in (DATA / "exit-codes.txt").read_text().splitlines())


def adm(state: dict[str, Any], *args: str) -> tuple[int, str, str]:
    return tgtadm.run(["tgtadm", "-C", "7", "--lld", "iscsi", *args], state)


def capture(name: str) -> tuple[int, str, str]:
    err = DATA / f"{name}.stderr"
    stderr = err.read_text() if err.exists() else ""
    return int(EXIT[name]), (DATA / f"{name}.stdout").read_text(), stderr


@pytest.fixture
def state() -> dict[str, Any]:
    state: dict[str, Any] = {"tgt": tgtadm.new_state(7)}
    add_device(state, f"{WORK}/disk1.img", 64 * 1024**2, block=False)
    add_device(state, f"{WORK}/disk2.img", 32 * 1024**2, block=False)
    return state


def first_target(state: dict[str, Any]) -> None:
    assert adm(state, "--op", "new", "--mode", "target", "--tid", "1", "-T", IQN1)[0] == 0
    assert adm(state, "--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
               "-b", f"{WORK}/disk1.img")[0] == 0  # fmt: skip
    assert adm(state, "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")[0] == 0


def second_target(state: dict[str, Any]) -> None:
    for args in (
        ("--op", "new", "--mode", "target", "--tid", "2", "-T", IQN2),
        ("--op", "new", "--mode", "logicalunit", "--tid", "2", "--lun", "1",
         "-b", f"{WORK}/disk2.img"),
        ("--op", "bind", "--mode", "target", "--tid", "2", "-Q", XEN1),
        ("--op", "bind", "--mode", "target", "--tid", "2", "-I", "127.0.0.1"),
        ("--op", "new", "--mode", "account", "--user", "miglab", "--password", "pw1"),
        ("--op", "bind", "--mode", "account", "--tid", "2", "--user", "miglab"),
        ("--op", "new", "--mode", "account", "--user", "storage-out", "--password", "pw2"),
        ("--op", "bind", "--mode", "account", "--tid", "2", "--user", "storage-out",
         "--outgoing"),
    ):  # fmt: skip
        assert adm(state, *args)[0] == 0, args


def test_show_with_no_target(state: dict[str, Any]) -> None:
    assert adm(state, "--op", "show", "--mode", "target") == capture("show-target-none")


def test_show_one_target(state: dict[str, Any]) -> None:
    first_target(state)
    assert adm(state, "--op", "show", "--mode", "target") == capture("show-target-idle")


def test_show_two_targets_accounts_and_acls(state: dict[str, Any]) -> None:
    first_target(state)
    second_target(state)
    assert adm(state, "--op", "show", "--mode", "account") == capture("show-account")
    assert adm(state, "--op", "show", "--mode", "target") == capture("show-target-two")
    assert adm(state, "--op", "show", "--mode", "target", "--tid", "1") == capture(
        "show-target-tid1-params"
    )


def test_show_targets_with_sessions_and_after_logout(state: dict[str, Any]) -> None:
    first_target(state)
    second_target(state)
    state["tgt"]["next_nexus"] = 3  # 1 and 2 were iscsi-ls's logins, gone again
    ids = [
        tgtadm.login(state, IQN1, XEN1, "127.0.0.1"),
        tgtadm.login(state, IQN1, XEN2, "127.0.0.1"),
        tgtadm.login(state, IQN2, XEN1, "127.0.0.1"),
    ]
    assert adm(state, "--op", "show", "--mode", "target") == capture("show-target-sessions")
    assert adm(state, "--op", "delete", "--mode", "target", "--tid", "1") == capture(
        "err-delete-active"
    )
    for nexus in ids:
        tgtadm.logout(state, nexus)
    assert adm(state, "--op", "show", "--mode", "target") == capture("show-target-after-logout")
    for tid in ("1", "2"):
        assert adm(state, "--op", "delete", "--mode", "target", "--tid", tid, "--force")[0] == 0
    assert adm(state, "--op", "show", "--mode", "target") == capture("show-target-deleted")


def test_errors_as_tgtadm_prints_them(state: dict[str, Any]) -> None:
    first_target(state)
    cases = {
        "err-target-exists": ("--op", "new", "--mode", "target", "--tid", "1", "-T", IQN1),
        "err-lun-exists": ("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
                           "-b", f"{WORK}/disk1.img"),
        "err-no-target": ("--op", "show", "--mode", "target", "--tid", "9"),
        "err-delete-no-target": ("--op", "delete", "--mode", "target", "--tid", "9"),
        "err-bad-backing": ("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "2",
                            "-b", f"{WORK}/missing.img"),
    }  # fmt: skip
    for name, args in cases.items():
        assert adm(state, *args) == capture(name), name
    other = tgtadm.run(["tgtadm", "-C", "8", "--lld", "iscsi", "--op", "show", "--mode",
                        "target"], state)  # fmt: skip
    assert other == capture("err-no-daemon")


def test_the_driver_reads_what_the_fake_prints(state: dict[str, Any]) -> None:
    first_target(state)
    tgtadm.login(state, IQN1, XEN1, "198.18.0.11")
    (target,) = parse_show_target(adm(state, "--op", "show", "--mode", "target")[1])
    assert (target.tid, target.iqn) == (1, IQN1)
    assert target.lun(1) is not None
    assert target.initiators == (XEN1,)


def test_an_initiator_outside_the_acls_cannot_log_in(state: dict[str, Any]) -> None:
    first_target(state)
    second_target(state)
    with pytest.raises(PermissionError):
        tgtadm.login(state, IQN2, XEN2, "198.18.0.12")
    assert tgtadm.login(state, IQN2, XEN1, "198.18.0.11") > 0
    with pytest.raises(ValueError):
        tgtadm.login(state, "iqn.2024-01.lab.storage:none", XEN1, "127.0.0.1")
