"""iscsiadm / iscsi-ls parsers: real captures (tests/data/iscsiadm, tests/data/tgt) and
transcripts composed from open-iscsi's print formats (see tests/data/iscsiadm/README.md).
"""

from __future__ import annotations

import pytest

from backend.drivers import ParseError
from backend.drivers.parse_iscsiadm import (
    ByPath,
    IscsiErr,
    OutcomeKind,
    Portal,
    by_path,
    classify,
    parse_by_path,
    parse_discovery,
    parse_iscsi_ls,
    parse_login_output,
    parse_node_list,
    parse_session_list,
    parse_session_tree,
)
from tests.conftest import DATA

ADM = DATA / "iscsiadm"
TGT = DATA / "tgt"
IQN1 = "iqn.2024-01.lab.storage:disk1"


def read(directory: str, name: str) -> str:
    return (DATA / directory / name).read_text()


def exit_code(name: str) -> int:
    codes = dict(line.split() for line in (ADM / "exit-codes.txt").read_text().splitlines())
    return int(codes[name])


# --- real captures -------------------------------------------------------------------


def test_version() -> None:
    assert read("iscsiadm", "version.stdout") == "iscsiadm version 2.1.8\n"


def test_manual_record_has_tpgt_minus_one_printed_unsigned() -> None:
    [record] = parse_node_list(read("iscsiadm", "node-one.stdout"))
    assert record.iqn == IQN1
    assert record.portal == Portal("127.0.0.1", 3261, -1)
    assert "4294967295" in read("iscsiadm", "node-one.stdout")


def test_no_records_and_no_sessions_are_exit_21() -> None:
    assert parse_node_list(read("iscsiadm", "node-none.stdout")) == []
    for name, text in [
        ("node-none", "iscsiadm: No records found"),
        ("session-none", "iscsiadm: No active sessions."),
        ("session-P3-none", "iscsiadm: No active sessions."),
        ("node-logout-none", "iscsiadm: No matching sessions found"),
        ("node-login-unknown", "iscsiadm: No records found"),
    ]:
        assert exit_code(name) == 21
        outcome = classify(exit_code(name), read("iscsiadm", f"{name}.stderr"))
        assert outcome.err is IscsiErr.NO_OBJS_FOUND
        assert outcome.kind is OutcomeKind.NOTHING_FOUND
        assert outcome.message == text
        assert not outcome.retryable


def test_login_without_iscsid_is_exit_20() -> None:
    err = read("iscsiadm", "node-login-no-iscsid.stderr")
    outcome = classify(exit_code("node-login-no-iscsid"), err)
    assert outcome.exit_code == 20
    assert outcome.err is IscsiErr.ISCSID_NOTCONN
    assert outcome.reported is IscsiErr.ISCSID_NOTCONN
    assert outcome.kind is OutcomeKind.NO_DAEMON and outcome.retryable
    assert (
        outcome.message == "iscsiadm: initiator reported error (20 - could not connect to iscsid)"
    )
    events = parse_login_output(read("iscsiadm", "node-login-no-iscsid.stdout") + err)
    assert [e.action for e in events] == ["logging-in", "failed"]
    assert events[0].iqn == IQN1 and events[0].portal == "127.0.0.1,3261"
    assert events[0].iface == "default"


def test_discovery_here_fails_for_lack_of_the_kernel_driver() -> None:
    assert read("iscsiadm", "discovery-st.stdout") == ""
    outcome = classify(exit_code("discovery-st"), read("iscsiadm", "discovery-st.stderr"))
    assert outcome.exit_code == 12
    assert outcome.err is IscsiErr.TRANS_NOT_FOUND
    assert outcome.kind is OutcomeKind.NO_DRIVER
    assert "iSCSI driver not found" in outcome.message
    # systemd's container noise is not mistaken for the cause
    assert "systemd" not in outcome.message


def test_node_new_output_and_iscsid_refusal() -> None:
    assert read("iscsiadm", "node-new.stdout").startswith("New iSCSI node [tcp:[hw=,ip=,")
    assert exit_code("node-new") == 0 and classify(0, read("iscsiadm", "node-new.stderr")).ok
    assert exit_code("iscsid-f") == 1
    assert "NETLINK_ISCSI" in read("iscsiadm", "iscsid-f.stderr")


def test_iscsi_ls_real_output() -> None:
    targets = parse_iscsi_ls(read("tgt", "iscsi-ls-s-xen1-chap.stdout"))
    assert [t.iqn for t in targets] == ["iqn.2024-01.lab.storage:disk2", IQN1]
    assert targets[1].portal == Portal("127.0.0.1", 3261, 1)
    assert [(lun.lun, lun.type, lun.size) for lun in targets[1].luns] == [
        (0, "STORAGE_ARRAY_CONTROLLER", None),
        (1, "DIRECT_ACCESS", "63M"),  # 64 MiB, less one block, rounded down
    ]
    assert targets[0].luns[1].size == "31M"
    assert all(t.error is None for t in targets)


def test_iscsi_ls_prints_login_errors_on_stdout() -> None:
    # No CHAP credentials: discovery lists disk2 first, its login fails, iscsi-ls stops (rc 10).
    [target] = parse_iscsi_ls(read("tgt", "iscsi-ls-s.stdout"))
    assert target.luns == ()
    assert target.error is not None and "Authentication failure(513)" in target.error
    assert parse_iscsi_ls(read("tgt", "iscsi-ls-s-refused.stdout")) == []
    assert "Connection refused(111)" in read("tgt", "iscsi-ls-s-refused.stderr")


# --- composed from source formats -----------------------------------------------------


def test_discovery_lines_ipv4_and_ipv6() -> None:
    records = parse_discovery(read("iscsiadm", "discovery-st-lab.stdout"))
    assert [(r.portal.address, r.portal.port, r.portal.tpgt, r.iqn) for r in records] == [
        ("198.18.0.1", 3260, 1, IQN1),
        ("198.18.0.1", 3260, 1, "iqn.2024-01.lab.storage:scratch"),
        ("fd00:198:18::1", 3260, 1, IQN1),
    ]
    assert str(records[2].portal) == "[fd00:198:18::1]:3260,1"


def test_session_list() -> None:
    sessions = parse_session_list(read("iscsiadm", "session-lab.stdout"))
    assert [(s.transport, s.sid, s.iqn) for s in sessions] == [
        ("tcp", 1, IQN1),
        ("tcp", 2, "iqn.2024-01.lab.storage:scratch"),
    ]
    assert not sessions[0].flash
    [public] = parse_session_list(read("iscsiadm", "session-public.stdout"))
    assert public.portal == Portal("192.168.100.1", 3260, 1)
    assert public.iqn == "iqn.2016-01-com.example.tg1"


def test_session_tree_finds_the_attached_disk_per_session() -> None:
    s1, s2 = parse_session_tree(read("iscsiadm", "session-P3-lab.stdout"))
    assert (s1.iqn, s1.sid, s1.host_number, s1.host_state) == (IQN1, 1, 2, "running")
    assert s1.initiator_name == "iqn.2024-01.lab.client:xen1"
    assert s1.iface_ip == "198.18.0.11"
    assert (s1.connection_state, s1.session_state) == ("LOGGED IN", "LOGGED_IN")
    assert s1.current_portal == s1.persistent_portal == Portal("198.18.0.1", 3260, 1)
    # tgt's LUN 0 is the controller: a SCSI device with no block device.
    assert [(d.lun, d.device) for d in s1.luns] == [(0, None), (1, "sdb")]
    assert s1.disk_for_lun(1) == "sdb" and s1.disk_for_lun(0) is None
    assert s2.disk_for_lun(1) == "sdc" and s2.sid == 2
    assert ("Recovery Timeout", "120") in s1.fields
    assert ("password", "********") in s1.fields


def test_session_tree_second_session_to_the_same_portal() -> None:
    text = (
        "Target: iqn.2024-01.lab.storage:disk1 (non-flash)\n"
        "\tCurrent Portal: 198.18.0.1:3260,1\n"
        "\tPersistent Portal: 198.18.0.1:3260,1\n"
        "\t\tSID: 1\n"
        "\n"
        "\t\tSID: 4\n"
        "\t\tHost Number: 5\tState: running\n"
        "\t\tscsi5 Channel 00 Id 0 Lun: 1\n"
        "\t\t\tAttached scsi disk sdd\t\tState: running\n"
    )
    a, b = parse_session_tree(text)
    assert (a.sid, b.sid) == (1, 4)
    assert b.current_portal == a.current_portal
    assert b.disk_for_lun(1) == "sdd"


@pytest.mark.parametrize(
    ("code", "stderr", "kind"),
    [
        (
            15,
            "iscsiadm: default: 1 session requested, but 1 already present.\n"
            "iscsiadm: Could not log into all portals\n",
            OutcomeKind.ALREADY_LOGGED_IN,
        ),
        (
            15,
            "iscsiadm: initiator reported error (15 - session exists)\n",
            OutcomeKind.ALREADY_LOGGED_IN,
        ),
        (24, "", OutcomeKind.AUTH_FAILED),
        (5, "", OutcomeKind.LOGIN_FAILED),
        (19, "", OutcomeKind.LOGIN_FAILED),
        (8, "", OutcomeKind.UNREACHABLE),
        (4, "", OutcomeKind.UNREACHABLE),
        (28, "", OutcomeKind.BUSY),
        (7, "", OutcomeKind.BAD_REQUEST),
        (99, "", OutcomeKind.FAILED),
    ],
)
def test_exit_code_classes(code: int, stderr: str, kind: OutcomeKind) -> None:
    outcome = classify(code, stderr)
    assert outcome.kind is kind
    if code == 15:
        assert outcome.settled and outcome.err is IscsiErr.SESS_EXISTS
        assert "already present" in outcome.message or "session exists" in outcome.message
    if code == 99:
        assert outcome.err is None


def test_error_texts_match_iscsi_err_h() -> None:
    assert IscsiErr(15).text == "session exists"
    assert IscsiErr(21).text == "no objects found"
    assert IscsiErr(8).text == "connection timed out"  # not a login failure: that is 5
    assert IscsiErr(5).text == "encountered iSCSI login failure"
    assert IscsiErr(24).text == "iSCSI login failed due to authorization failure"
    assert len(IscsiErr) == 34


def test_login_and_logout_messages() -> None:
    text = (
        "Logging in to [iface: default, target: iqn.2016-01-com.example.tg1, "
        "portal: 192.168.100.1,3260]\n"
        "Login to [iface: default, target: iqn.2016-01-com.example.tg1, "
        "portal: 192.168.100.1,3260] successful.\n"
        "Logging out of session [sid: 1, target: iqn.2016-01-com.example.tg1, "
        "portal: 192.168.100.1,3260]\n"
        "Logout of [sid: 1, target: iqn.2016-01-com.example.tg1, "
        "portal: 192.168.100.1,3260] successful.\n"
    )
    events = parse_login_output(text)
    assert [e.action for e in events] == ["logging-in", "logged-in", "logging-out", "logged-out"]
    assert events[3].sid == 1 and events[1].portal == "192.168.100.1,3260"


def test_by_path_names() -> None:
    path = by_path("198.18.0.1", 3260, IQN1, 1)
    assert path == "/dev/disk/by-path/ip-198.18.0.1:3260-iscsi-iqn.2024-01.lab.storage:disk1-lun-1"
    assert by_path("10.0.0.1", 3260, IQN1, 0, partition=1).endswith("-lun-0-part1")
    assert parse_by_path(path) == ByPath("198.18.0.1", 3260, IQN1, 1)
    assert parse_by_path(path.removeprefix("/dev/disk/by-path/")).lun == 1
    assert parse_by_path(by_path("198.18.0.1", 3260, IQN1, 1, partition=2)).partition == 2
    with pytest.raises(ValueError):
        by_path("198.18.0.1", 3260, "iqn with space", 1)
    with pytest.raises(ParseError):
        parse_by_path("/dev/disk/by-path/pci-0000:00:1f.2-ata-1")


@pytest.mark.parametrize(
    ("parser", "text"),
    [
        (parse_node_list, "198.18.0.1 iqn.x:y\n"),
        (parse_session_list, "tcp: 1 198.18.0.1:3260,1 iqn.x:y\n"),
        (parse_session_tree, "\t\tSID: 1\n"),
        (parse_iscsi_ls, "Lun:0 Type:X\n"),
    ],
)
def test_lines_not_understood_are_skipped(parser: object, text: str) -> None:
    assert parser(text) == []  # type: ignore[operator]
