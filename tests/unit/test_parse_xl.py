"""xl parsers. Xen cannot run here: the transcripts are composed from Xen's print
formats or copied from public logs (tests/data/xl/README.md names the source of each).
"""

from __future__ import annotations

import pytest

from backend.drivers import ParseError
from backend.drivers.parse_xl import (
    MigratePhase,
    ShutdownReason,
    XlMigrateParser,
    XlState,
    is_unknown_domain_error,
    parse_xl_info,
    parse_xl_list,
    parse_xl_list_long,
    parse_xl_migrate,
)
from tests.conftest import DATA

XL = DATA / "xl"


def read(name: str) -> str:
    return (XL / name).read_text()


# --- xl list ---------------------------------------------------------------------------


def test_public_xen_4_9_list() -> None:
    dom0, guest = parse_xl_list(read("xl-list-4.9-public.txt"))
    assert (dom0.name, dom0.domid, dom0.mem_mib, dom0.vcpus) == ("Domain-0", 0, 15084, 8)
    assert dom0.state.running and str(dom0.state) == "r-----"
    assert (guest.name, guest.domid, guest.mem_mib, guest.vcpus) == ("guest-01", 4, 1024, 2)
    assert guest.state.blocked and not guest.state.running
    assert guest.cpu_time_s == 7.7


def test_list_states_and_long_names() -> None:
    _, guest, longname, crashed = parse_xl_list(read("xl-list-xen1.txt"))
    assert guest.state == XlState.parse("-b----")
    assert longname.name == "a-guest-with-a-name-longer-than-forty-columns"
    assert longname.state.paused and longname.domid == 6
    assert crashed.state.shutdown and crashed.state.shutdown_reason is ShutdownReason.CRASH


def test_migration_names() -> None:
    _, incoming = parse_xl_list(read("xl-list-xen2-incoming.txt"))
    assert incoming.name == "guest--incoming" and incoming.base_name == "guest"
    assert incoming.migration_role == "incoming" and incoming.state.paused
    _, away = parse_xl_list(read("xl-list-xen1-migratedaway.txt"))
    assert away.migration_role == "migratedaway" and away.base_name == "guest"
    assert away.state.shutdown_reason is ShutdownReason.SUSPEND
    assert str(away.state) == "---ss-"


def test_list_header_is_optional_and_garbage_names_the_line() -> None:
    rows = read("xl-list-xen1.txt").splitlines()[1:]
    assert len(parse_xl_list("\n".join(rows))) == 4
    with pytest.raises(ParseError) as info:
        parse_xl_list(read("xl-list-xen1.txt") + "guest 5 1024 2 xyz 1.0\n")
    assert info.value.line == "guest 5 1024 2 xyz 1.0"
    assert info.value.lineno == 6


def test_unknown_domain_error() -> None:
    assert is_unknown_domain_error("nosuch is an invalid domain identifier (rc=-6)\n")
    assert is_unknown_domain_error("Error: Domain 'nosuch' does not exist.\n")
    assert not is_unknown_domain_error("libxl: error: something else\n")


# --- xl list -l ------------------------------------------------------------------------


def test_list_long_4_17_json() -> None:
    [cfg] = parse_xl_list_long(read("xl-list-l-4.17.json"))
    assert (cfg.domid, cfg.name, cfg.type) == (5, "guest", "pv")
    assert (cfg.vcpus, cfg.memory_mib, cfg.max_memory_mib) == (2, 1024, 1024)
    [disk] = cfg.disks
    assert disk.target == (
        "/dev/disk/by-path/ip-198.18.0.1:3260-iscsi-iqn.2024-01.lab.storage:disk1-lun-1"
    )
    assert (disk.vdev, disk.backend, disk.format, disk.readwrite) == ("xvda", "phy", "raw", True)
    assert cfg.nics[0].bridge == "xenbr0" and cfg.nics[0].mac == "00:16:3e:5a:1c:07"
    assert cfg.on_reboot == "restart"


def test_list_long_old_style_with_every_field() -> None:
    [cfg] = parse_xl_list_long(read("xl-list-l-4.4-style.json"))
    assert (cfg.domid, cfg.name, cfg.vcpus, cfg.memory_mib) == (4, "guest-01", 2, 1024)
    disk, cdrom = cfg.disks
    assert disk.target is not None and disk.target.endswith("disk1-lun-0")
    assert cdrom.is_cdrom and not cdrom.readwrite and cdrom.vdev == "xvdc"


def test_list_long_uses_the_top_level_domid() -> None:
    text = '[{"domid": 9, "config": {"c_info": {"name": "g", "domid": 0}}}]'
    [cfg] = parse_xl_list_long(text)
    assert cfg.domid == 9 and cfg.disks == () and cfg.vcpus is None


def test_list_long_garbage() -> None:
    assert parse_xl_list_long("") == []
    with pytest.raises(ParseError) as info:
        parse_xl_list_long('[\n  {"domid": 1,\n   "config": {oops}\n]')
    assert info.value.lineno == 3 and info.value.line == '   "config": {oops}'
    with pytest.raises(ParseError, match="SXP"):
        parse_xl_list_long("(domain\n    (domid 5)\n)")
    with pytest.raises(ParseError, match=r"no domid or c_info\.name"):
        parse_xl_list_long('[{"config": {}}]')


# --- xl info ---------------------------------------------------------------------------


def test_info_4_17() -> None:
    info = parse_xl_info(read("xl-info-4.17.txt"))
    assert (info.host, info.release, info.machine) == ("xen1", "6.1.0-23-amd64", "x86_64")
    assert (info.nr_cpus, info.total_memory_mib, info.free_memory_mib) == (4, 8066, 4867)
    assert (info.xen_major, info.xen_minor, info.xen_version) == (4, 17, "4.17.5-pre")
    assert info.xen_scheduler == "credit2"
    assert "hvm" in info.virt_caps and "xen-3.0-x86_64" in info.xen_caps
    assert info.get("xen_changeset") == ""  # printed as "key : " with nothing after
    assert info.get("cc_compile_date") == "Tue Aug 13 14:34:21 UTC 2024"
    assert info.xen_commandline.startswith("placeholder dom0_mem=2048M")


def test_info_public_partial_debian() -> None:
    info = parse_xl_info(read("xl-info-4.17-debian-partial-public.txt"))
    assert (info.host, info.total_memory_mib, info.free_memory_mib) == ("hoffa", 4063, 2995)
    assert info.xen_version == "4.17.4-pre" and info.xen_major is None


def test_info_garbage() -> None:
    with pytest.raises(ParseError, match="'nr_cpus' is not a number") as info:
        parse_xl_info(
            read("xl-info-4.17.txt").replace("nr_cpus                : 4", "nr_cpus : four")
        )
    assert info.value.line == "nr_cpus : four"
    with pytest.raises(ParseError, match="no 'host'"):
        parse_xl_info("release : x\n")
    with pytest.raises(ParseError):
        parse_xl_info("this is not xl info\n")


# --- xl migrate ------------------------------------------------------------------------


def events(updates: list) -> list[str]:  # type: ignore[type-arg]
    return [u.event for u in updates]


def test_public_4_9_run_phases_and_success() -> None:
    updates = parse_xl_migrate(read("xl-migrate-4.9-public.txt"), exit_status=0)
    assert events(updates) == [
        "receiver-ready",
        "stream-header",
        "receiver-loading",
        "saving-domain",
        "restore-complete",
        "transfer-complete",
        "acknowledged",
        "go",
        "target-starting",
        "target-started",
        "target-reports-success",
        "success",
    ]
    phases = [u.phase for u in updates]
    assert phases[0] is MigratePhase.STARTED
    assert phases[3] is MigratePhase.PRECOPY
    assert phases[5] is MigratePhase.STOP_AND_COPY
    assert updates[-1].phase is MigratePhase.DONE and updates[-1].final
    assert updates[1].side == "sender" and updates[0].side == "receiver"


def test_v2_header_and_no_per_iteration_lines() -> None:
    parser = XlMigrateParser()
    updates = []
    for line in read("xl-migrate-v2-4.17-verbose.txt").splitlines():
        updates += parser.feed(line)
    assert parser.header is not None and parser.header.optional_data_len == 1502
    assert parser.stream_version == 2 and parser.header.json_config
    assert (parser.domid, parser.guest_type) == (5, "x86 PV")
    # xl hides libxc progress on the sender: migration v2 shows no iteration counts.
    assert all(u.iteration is None and u.pages is None for u in updates)
    assert parser.result is not None and parser.result.phase is MigratePhase.DONE
    assert "xc: detail: 64 bits, 4 levels" in parser.ignored
    assert parser.finish(0) == []  # already final
    parser.feed("xc: info: Console: mfn 0x7e0b1, dom 0, evt 2")  # a late receiver line
    assert parser.result is not None and parser.result.event == "success"


def test_a_message_written_into_a_line_of_the_other_side_is_read() -> None:
    # From a CI run here (Xen 4.17, `xl -vvv migrate`, 2026-12-06): the receiver's
    # message, carried back by ssh, landed after the first word of a sender's debug
    # line, whose rest came on the next line.
    lines = [
        "libxl: debug: libxl_domain.c:512:libxl_domain_suspend: Domain 1:ao 0x55fbfbfbfbb0:"
        " create: how=(nil) callback=(nil) poller=0x55fbfbfbd2f0",
        "libxl: migration target: Ready to receive domain.",
        "debug: libxl.c:771:libxl__fd_flags_modify_save: fnctl F_GETFL flags for fd 15 are 0x1",
        "libxl: migration sender: Target reports successful startup.",
        "Migration successful.",
    ]
    parser = XlMigrateParser()
    events = [u.event for line in lines for u in parser.feed(line)]
    assert events[:1] == ["receiver-ready"]
    assert "target-reports-success" in events and events[-1] == "success"
    # A message inside a line, not at its end, is not one.
    assert XlMigrateParser().feed("note: migration target: Ready to receive domain. (x)") == []


def test_v1_legacy_iterations_and_pages() -> None:
    updates = parse_xl_migrate(read("xl-migrate-v1-4.4-verbose.txt"), exit_status=0)
    stats = [u for u in updates if u.event == "iteration-stats"]
    assert [u.iteration for u in stats] == [0, 1, 2, 3, 4]
    assert [u.dirty_pages for u in stats] == [1867, 310, 45, 38, 38]
    assert [u.sent_mbit_s for u in stats] == [93, 85, 81, 77, 149]
    assert stats[0].elapsed_ms == 11452 and stats[0].dirtied_mbit_s == 5
    assert [u.phase for u in stats] == [MigratePhase.PRECOPY] * 3 + [MigratePhase.STOP_AND_COPY] * 2
    [total] = [u for u in updates if u.event == "total-sent"]
    assert total.pages == 34832 and total.bytes == 34832 * 4096
    received = [u for u in updates if u.event == "restore-progress"]
    assert received[0].pages == 1024 and received[0].pages_total == 32768
    assert received[0].percent == 3 and received[0].side == "receiver"
    assert received[-1].pages == 34751 and received[-1].percent == 106
    suspended = [u for u in updates if u.event == "domain-suspended"]
    assert len(suspended) == 1 and suspended[0].phase is MigratePhase.STOP_AND_COPY
    assert updates[-1].event == "success" and updates[-1].final


def test_failure_at_target_is_resumed_at_source() -> None:
    updates = parse_xl_migrate(read("xl-migrate-v2-4.17-target-failure.txt"), exit_status=1)
    final = updates[-1]
    assert final.phase is MigratePhase.FAILED and final.final
    assert final.event == "failed-at-target"
    assert final.error == "Migration failed due to problems at target."
    assert final.resumed_at_source is True  # "migration sender: Resumed OK." was seen
    assert final.causes == (
        "migration target: Failure, destroying our copy.",
        "migration sender: Target reports startup failure (status code 3).",
    )


def test_handshake_failure_leaves_state_undefined() -> None:
    parser = XlMigrateParser()
    for line in read("xl-migrate-v2-4.17-handshake-failure.txt").splitlines():
        parser.feed(line)
    final = parser.result
    assert final is not None and final.event == "failed-handshake"
    assert final.resumed_at_source is None
    assert final.causes[0].endswith(
        "reading success/failure report message from migration receiver stream"
    )
    assert not any("SEVERE" in line for line in parser.ignored)  # the block is understood


def test_ssh_failure_has_no_closing_line_until_finish() -> None:
    parser = XlMigrateParser()
    for line in read("xl-migrate-v2-4.17-no-receiver.txt").splitlines():
        parser.feed(line)
    assert parser.result is None and parser.phase is MigratePhase.STARTED
    [final] = parser.finish(1)
    assert final.phase is MigratePhase.FAILED and final.final
    assert final.error == "ssh: connect to host xen2 port 22: Connection refused"
    assert final.resumed_at_source is True  # the guest was never suspended
    assert len(final.causes) == 3


def test_progress_lines_when_xl_shows_them() -> None:
    """libxc progress as xtl prints it: message form and tty form with CRs (xl save)."""
    parser = XlMigrateParser()
    [a] = parser.feed("xc: info: Saving domain 5, type x86 PV")
    [b] = parser.feed("xc: progress: Frames iteration 0: 131072/262144   50%")
    [c] = parser.feed("xc: detail: Frames iteration 1: 3072/6301   48%")
    [d] = parser.feed("xc: progress: Domain now suspended: 0/0    0%")
    e = parser.feed("xc: Frames iteration 5: 0/120    0%\rxc: Frames iteration 5: 120/120  100%")
    assert a.phase is MigratePhase.PRECOPY
    assert (b.iteration, b.pages, b.pages_total, b.percent) == (0, 131072, 262144, 50)
    assert b.phase is MigratePhase.PRECOPY and b.bytes == 131072 * 4096
    assert c.iteration == 1 and c.pages == 3072
    assert d.event == "domain-suspended" and d.phase is MigratePhase.STOP_AND_COPY
    assert [(u.iteration, u.pages, u.phase) for u in e] == [
        (5, 0, MigratePhase.STOP_AND_COPY),
        (5, 120, MigratePhase.STOP_AND_COPY),
    ]


def test_libxl_debug_marks_stop_and_copy() -> None:
    parser = XlMigrateParser()
    parser.feed("Saving to migration stream new xl format (info 0x3/0x0/1502)")
    [u] = parser.feed(
        "libxl: debug: libxl_dom_suspend.c:201:domain_suspend_callback_common: "
        "Domain 5:issuing PV suspend request via XenBus control node"
    )
    assert u.event == "suspend-requested" and u.phase is MigratePhase.STOP_AND_COPY
    [v] = parser.feed(
        "libxl: debug: libxl_dom_suspend.c:352:suspend_common_wait_guest_check: "
        "Domain 5:guest has suspended"
    )
    assert v.event == "domain-suspended" and parser.suspended


def test_phase_never_goes_back() -> None:
    parser = XlMigrateParser()
    parser.feed("migration target: Transfer complete, requesting permission to start domain.")
    [u] = parser.feed("migration target: Ready to receive domain.")
    assert u.phase is MigratePhase.STOP_AND_COPY


def test_suspend_failure_and_timestamps() -> None:
    parser = XlMigrateParser()
    parser.feed(
        "2024-05-01 10:00:00 UTC [4242] xc: error: Save failed (0 = Success): Internal error"
    )
    parser.feed("migration sender: libxl_domain_suspend failed (rc=-8)")
    [final] = parser.feed("Migration failed, failed to suspend at sender.")
    assert final.event == "failed-suspend" and final.resumed_at_source is True
    assert final.causes == (
        "xc: error: Save failed (0 = Success): Internal error",
        "migration sender: libxl_domain_suspend failed (rc=-8)",
    )


@pytest.mark.parametrize(
    "bad",
    [
        "Saving to migration stream new xl format (info garbage)",
        "xc: progress: Frames iteration 1: many/262144   50%",
        "xc: detail: delta 12ms, dom0 lots",
        "Loading new save file <incoming migration stream> (new xl fmt info ?)",
        "xc: detail: Total pages sent= many",
    ],
)
def test_malformed_known_lines_are_skipped_and_named_not_raised(bad: str) -> None:
    parser = XlMigrateParser()
    parser.feed("migration target: Ready to receive domain.")
    assert parser.feed(bad) == []
    [error] = parser.malformed
    assert error.line == bad and error.lineno == 2
    # the parser goes on reading after it
    assert [u.event for u in parser.feed("Migration successful.")] == ["success"]


def test_unknown_lines_are_kept_not_fatal() -> None:
    parser = XlMigrateParser()
    assert (
        parser.feed("Warning: Permanently added 'xen2' (ED25519) to the list of known hosts.") == []
    )
    assert parser.ignored == [
        "Warning: Permanently added 'xen2' (ED25519) to the list of known hosts."
    ]
