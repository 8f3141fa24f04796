"""Issue 13, initiator side: iscsiadm output as people paste it, and old discovery exits."""

from __future__ import annotations

from backend.drivers.parse_iscsiadm import (
    OutcomeKind,
    classify,
    parse_node_list,
    parse_session_list,
    parse_session_tree,
)
from tests.conftest import DATA


def test_session_tree_copied_from_a_terminal_parses_like_the_tab_original() -> None:
    # No real -P 3 capture exists here (no iscsi_tcp in this sandbox); the TAB-indented
    # fixture passed through expand(1)'s rule (TAB stops every 8 columns) is what a
    # terminal copy of it gives.
    tabbed = (DATA / "iscsiadm" / "session-P3-lab.stdout").read_text()
    assert "\t" in tabbed
    spaced = tabbed.expandtabs(8)
    assert "\t" not in spaced
    s1, s2 = parse_session_tree(spaced)
    assert (s1.sid, s1.host_number, s1.host_state) == (1, 2, "running")
    assert [(d.lun, d.device) for d in s1.luns] == [(0, None), (1, "sdb")]
    assert s2.disk_for_lun(1) == "sdc" and s2.sid == 2
    assert s1.iface_ip == "198.18.0.11"
    assert parse_session_tree(spaced) == parse_session_tree(tabbed)


def test_session_tree_skips_lines_it_does_not_know() -> None:
    text = (
        "Target: iqn.2024-01.lab.storage:disk1 (non-flash)\n"
        "\tCurrent Portal: 198.18.0.1:3260,1\n"
        "\tPersistent Portal: 198.18.0.1:3260,1\n"
        "\t\tSID: 3\n"
        "\t\tsomething a newer iscsiadm prints\n"
        "\t\tAttached scsi disk sdz\t\tState: running\n"  # no scsiN line before it
        "\t\tscsi5 Channel 00 Id 0 Lun: 1\n"
        "\t\t\tAttached scsi disk sdd\t\tState: running\n"
    )
    [s] = parse_session_tree("\t\tSID: 1\n" + text)  # details before any Target: skipped
    assert s.sid == 3 and s.disk_for_lun(1) == "sdd"
    assert [d.device for d in s.luns] == ["sdd"]


def test_discovery_exit_21_after_refused_connects_is_unreachable_and_retryable() -> None:
    # Line formats: usr/io.c "cannot make connection to %s: %s" (published verbatim in
    # github.com/SUSE/DeepSea/pull/469 and openebs/openebs#1450), usr/discovery.c
    # "connection login retries (reopen_max) %d exceeded", and "No portals found" with
    # exit 21 (peter-wangxu/goock#19).
    stderr = (
        "iscsiadm: cannot make connection to 137.74.24.206: Connection refused\n" * 6
        + "iscsiadm: connection login retries (reopen_max) 5 exceeded\n"
        + "iscsiadm: No portals found\n"
    )
    outcome = classify(21, stderr)
    assert outcome.kind is OutcomeKind.UNREACHABLE
    assert outcome.retryable
    assert "Connection refused" in outcome.message


def test_exit_21_without_connect_errors_is_still_nothing_found() -> None:
    outcome = classify(21, "iscsiadm: No portals found\n")
    assert outcome.kind is OutcomeKind.NOTHING_FOUND and not outcome.retryable


def test_session_and_node_lists_with_widened_spaces_parse_the_same() -> None:
    for name, parse in (
        ("session-lab.stdout", parse_session_list),
        ("discovery-st-lab.stdout", parse_node_list),
    ):
        text = (DATA / "iscsiadm" / name).read_text()
        widened = text.replace(" ", "  ")
        assert widened != text
        assert parse(widened) == parse(text) != []  # type: ignore[operator]
