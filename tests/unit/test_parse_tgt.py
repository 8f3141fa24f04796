"""tgtadm parsers against real tgt 1.0.85 captures (tests/data/tgt, see its README)."""

from __future__ import annotations

import pytest

from backend.drivers.parse_tgt import (
    TgtAccount,
    TgtadmError,
    classify_tgtadm,
    parse_show_account,
    parse_show_conn,
    parse_show_target,
    parse_target_params,
)
from tests.conftest import DATA

TGT = DATA / "tgt"
IQN1 = "iqn.2024-01.lab.storage:disk1"
IQN2 = "iqn.2024-01.lab.storage:disk2"
XEN1 = "iqn.2024-01.lab.client:xen1"
XEN2 = "iqn.2024-01.lab.client:xen2"


def stdout(name: str) -> str:
    return (TGT / f"{name}.stdout").read_text()


def stderr(name: str) -> str:
    return (TGT / f"{name}.stderr").read_text()


def exit_code(name: str) -> int:
    codes = dict(line.split() for line in (TGT / "exit-codes.txt").read_text().splitlines())
    return int(codes[name])


def test_no_targets_is_empty_output() -> None:
    assert stdout("show-target-none") == ""
    assert parse_show_target(stdout("show-target-none")) == []
    assert parse_show_target(stdout("show-target-deleted")) == []


def test_idle_target_has_controller_lun0_and_disk_lun1() -> None:
    [target] = parse_show_target(stdout("show-target-idle"))
    assert (target.tid, target.iqn, target.driver, target.state) == (1, IQN1, "iscsi", "ready")
    assert target.nexuses == ()
    assert target.acls == ("ALL",)
    assert target.accounts == ()
    lun0, lun1 = target.luns
    assert lun0.is_controller and lun0.backing_store_type == "null"
    assert lun0.backing_store_path is None  # tgt prints "None"
    assert (lun0.size_mb, lun0.block_size) == (0, 1)
    assert lun1.type == "disk"
    assert lun1.backing_store_path == "/tmp/miglab-parse-capture/disk1.img"
    assert lun1.backing_store_type == "rdwr"
    assert (lun1.size_mb, lun1.block_size) == (67, 512)  # 64 MiB in rounded decimal MB
    assert (lun1.scsi_id, lun1.scsi_sn) == ("IET     00010001", "beaf11")
    assert lun1.online and not lun1.readonly and not lun1.removable
    assert lun1.backing_store_flags == ""
    assert ("Thin-provisioning", "No") in lun1.extra
    assert target.data_luns == (lun1,)
    assert target.lun(1) is lun1 and target.lun(7) is None


def test_acl_by_name_and_address_and_chap_accounts() -> None:
    t1, t2 = parse_show_target(stdout("show-target-two"))
    assert t1.iqn == IQN1 and t2.iqn == IQN2
    assert t2.acls == ("127.0.0.1", XEN1)
    assert t2.accounts == (TgtAccount("miglab"), TgtAccount("storage-out", outgoing=True))
    # 32 MiB is 33.55 decimal MB: tgt rounds to 34, it does not truncate.
    assert t2.lun(1) is not None and t2.lun(1).size_mb == 34  # type: ignore[union-attr]
    assert t2.lun(1).backing_store_path == "/tmp/miglab-parse-capture/disk2.img"  # type: ignore[union-attr]


def test_live_sessions_show_as_it_nexus() -> None:
    t1, t2 = parse_show_target(stdout("show-target-sessions"))
    assert [n.nexus_id for n in t1.nexuses] == [3, 4]
    assert t1.initiators == (XEN1, XEN2)
    assert t1.nexuses[0].alias is None  # "alias: none"
    assert t1.nexuses[0].addresses == ("127.0.0.1",)
    assert t1.nexuses[1].connections[0].cid == 0
    assert t2.initiators == (XEN1,)  # logged in with CHAP (user miglab)
    assert t2.nexuses[0].nexus_id == 5


def test_after_logout_the_nexus_list_is_empty_again() -> None:
    t1, t2 = parse_show_target(stdout("show-target-after-logout"))
    assert t1.nexuses == () and t2.nexuses == ()
    assert t2.accounts[1] == TgtAccount("storage-out", outgoing=True)


def test_show_target_with_tid_prints_parameters_not_the_target() -> None:
    params = parse_target_params(stdout("show-target-tid1-params"))
    assert params["MaxRecvDataSegmentLength"] == "8192"
    assert params["HeaderDigest"] == "None"
    assert params["MaxConnections"] == "1"
    assert len(params) == 26
    assert parse_target_params(stdout("show-target-idle")) == {}  # the tree: no key=value


def test_show_account_and_conn() -> None:
    assert parse_show_account(stdout("show-account")) == ["storage-out", "miglab"]
    sessions = parse_show_conn(stdout("show-conn-tid1"))
    assert [s.session_id for s in sessions] == [4, 3]
    assert sessions[0].connections == ((0, XEN2, "127.0.0.1"),)
    assert sessions[1].connections == ((0, XEN1, "127.0.0.1"),)


@pytest.mark.parametrize(
    ("capture", "error"),
    [
        ("err-target-exists", TgtadmError.TARGET_EXISTS),
        ("err-lun-exists", TgtadmError.LUN_EXISTS),
        ("err-no-target", TgtadmError.NO_TARGET),
        ("err-delete-no-target", TgtadmError.NO_TARGET),
        ("err-bad-backing", TgtadmError.INVALID_REQUEST),
        ("err-delete-active", TgtadmError.TARGET_ACTIVE),
        ("err-no-daemon", TgtadmError.NO_DAEMON),
    ],
)
def test_real_tgtadm_errors(capture: str, error: TgtadmError) -> None:
    assert stdout(capture) == ""
    outcome = classify_tgtadm(exit_code(capture), stderr(capture))
    assert outcome.error is error
    assert outcome.message == stderr(capture).strip()
    assert not outcome.ok


def test_exit_codes_are_22_and_107() -> None:
    assert exit_code("err-target-exists") == 22  # EINVAL for every management error
    assert exit_code("err-no-daemon") == 107  # ENOTCONN: nothing on control port 8
    assert exit_code("show-target-idle") == 0


def test_idempotency_helpers() -> None:
    exists = classify_tgtadm(22, stderr("err-target-exists"))
    missing = classify_tgtadm(22, stderr("err-no-target"))
    assert exists.already_exists and not exists.absent
    assert missing.absent and not missing.already_exists
    assert classify_tgtadm(0, "").ok
    assert classify_tgtadm(107, "").error is TgtadmError.NO_DAEMON
    assert classify_tgtadm(22, "tgtadm: something new").error is TgtadmError.UNKNOWN


@pytest.mark.parametrize(
    ("text", "unparsed"),
    [
        ("Target 1: iqn.x\n    Bogus section:\n", 1),
        ("Target 1: iqn.x\n   System information:\n        Driver: iscsi\n", 0),
        ("Target 1: iqn.x\n    ACL information:\n        two words\n", 1),
    ],
)
def test_unknown_lines_are_skipped_and_counted(text: str, unparsed: int) -> None:
    [target] = parse_show_target(text)
    assert (target.tid, target.iqn, target.unparsed) == (1, "iqn.x", unparsed)
    assert target.acls == ()


def test_unreadable_size_is_null_not_an_error() -> None:
    [target] = parse_show_target(
        "Target 1: iqn.x\n    LUN information:\n        LUN: 0\n            Size: lots\n"
        "            Type: disk\n            Backing store type: rdwr\n"
        "            Backing store path: /x\n"
    )
    [lun] = target.luns
    assert (lun.size_mb, lun.block_size, lun.backing_store_path) == (None, None, "/x")
    assert parse_show_target("Target one: iqn.x\n") == []
