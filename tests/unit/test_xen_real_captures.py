"""The xl and iscsiadm parsers on what the real tools printed in the Xen sandbox.

Captured from Xen 4.17.7 (Debian 12's xen-utils-4.17) and open-iscsi 2.1.8 running in
the dom0s of `miglab sandbox up --hypervisor xen`; see tests/data/xl/README.md and
tests/data/iscsiadm/README.md for how each file was made.
"""

from __future__ import annotations

import re
from pathlib import Path

from backend.drivers.parse_iscsiadm import (
    OutcomeKind,
    by_path,
    classify,
    parse_discovery,
    parse_node_list,
    parse_session_list,
    parse_session_tree,
)
from backend.drivers.parse_xl import (
    MigratePhase,
    is_unknown_domain_error,
    parse_xl_info,
    parse_xl_list,
    parse_xl_list_long,
    parse_xl_migrate,
)
from backend.drivers.xen_toolstack import xl_run_state

DATA = Path(__file__).resolve().parents[1] / "data"
XL = DATA / "xl" / "real-4.17"
ISCSI = DATA / "iscsiadm" / "real-2.1.8-dom0"
IQN = "iqn.2009-06.org.miglab.sandbox:xdev-disk"
PORTAL = "198.19.250.1"


def read(directory: Path, name: str) -> tuple[str, str, int]:
    def text(suffix: str) -> str:
        path = directory / f"{name}.{suffix}"
        return path.read_text() if path.exists() else ""

    return text("stdout"), text("stderr"), int(text("rc"))


def test_xl_list_with_the_guest_after_migration() -> None:
    out, _err, rc = read(XL, "xl-list-host2-guest")
    assert rc == 0
    domains = parse_xl_list(out)
    assert [(d.name, d.domid) for d in domains] == [("Domain-0", 0), ("miglab-guest", 1)]
    guest = domains[1]
    assert (guest.mem_mib, guest.vcpus, xl_run_state(guest.state)) == (256, 2, "blocked")
    assert xl_run_state(domains[0].state) == "running"


def test_xl_list_of_dom0_only_and_of_an_unknown_domain() -> None:
    out, _err, rc = read(XL, "xl-list-host1-dom0-only")
    assert rc == 0 and [d.name for d in parse_xl_list(out)] == ["Domain-0"]
    out, err, rc = read(XL, "xl-list-unknown")
    assert (out, rc) == ("", 1)
    assert is_unknown_domain_error(err)


def test_xl_info_names_xen_and_hap() -> None:
    out, _err, rc = read(XL, "xl-info")
    info = parse_xl_info(out)
    assert rc == 0
    assert (info.xen_version, info.xen_major, info.xen_minor) == ("4.17.7", 4, 17)
    assert (info.total_memory_mib, info.free_memory_mib, info.nr_cpus) == (2047, 1000, 2)
    # The guest is PVH because of this: HAP log-dirty (Debian's Xen has no shadow paging).
    assert "hap" in info.virt_caps
    assert info.release == "6.1.0-57-amd64"


def test_xl_list_long_of_the_pvh_guest() -> None:
    out, _err, _rc = read(XL, "xl-list-l-guest")
    [config] = parse_xl_list_long(out)
    assert (config.name, config.type, config.vcpus, config.memory_mib) == (
        "miglab-guest",
        "pvh",
        2,
        256,
    )
    [disk] = config.disks
    assert disk.target == by_path(PORTAL, 3260, IQN, 1)
    assert (disk.vdev, disk.readwrite) == ("xvda", True)
    assert [n.bridge for n in config.nics] == ["xenbr0"]


def test_xl_migrate_success_of_the_pvh_guest() -> None:
    _out, err, rc = read(XL, "xl-v-migrate-pvh-success")
    updates = parse_xl_migrate(err, rc)
    assert updates[-1].phase is MigratePhase.DONE and updates[-1].error is None
    events = [u.event for u in updates]
    for event in ("receiver-ready", "saving-domain", "transfer-complete", "go", "success"):
        assert event in events
    assert events.index("saving-domain") < events.index("go") < events.index("success")


def test_xl_migrate_of_a_pv_guest_without_log_dirty_fails_and_resumes() -> None:
    _out, err, rc = read(XL, "xl-v-migrate-pv-no-logdirty")
    final = parse_xl_migrate(err, rc)[-1]
    assert rc == 1 and final.phase is MigratePhase.FAILED
    assert final.error == "Migration failed, failed to suspend at sender."
    assert final.resumed_at_source is True
    assert any("Failed to enable logdirty" in cause for cause in final.causes)


def test_xl_create_errors_exit_3() -> None:
    # xl create exits 3 here (not EXIT_FAILURE), with libxl's reasons on stderr.
    out, err, rc = read(XL, "xl-create-already-running")
    assert (out, rc) == ("", 3)
    assert 'Domain with name "miglab-guest" already exists.' in err
    _out, err, rc = read(XL, "xl-create-hotplug-failure")
    assert rc == 3 and "/etc/xen/scripts/block failed; error detected." in err
    _out, err, rc = read(XL, "xl-create-no-config")
    assert rc == 3 and err.startswith("Failed to read config file: /etc/xen/nosuch.cfg")


def test_iscsiadm_session_node_and_discovery() -> None:
    out, _err, rc = read(ISCSI, "session")
    [session] = parse_session_list(out)
    assert rc == 0 and session.iqn == IQN
    out, _err, _rc = read(ISCSI, "node")
    assert [(r.iqn, r.portal.address, r.portal.port) for r in parse_node_list(out)] == [
        (IQN, PORTAL, 3260)
    ]
    out, _err, _rc = read(ISCSI, "discovery-st")
    assert [r.iqn for r in parse_discovery(out)] == [IQN]


def test_iscsiadm_session_tree_of_a_real_dom0() -> None:
    out, _err, rc = read(ISCSI, "session-P3")
    [detail] = parse_session_tree(out)
    assert rc == 0 and detail.iqn == IQN
    assert (detail.persistent_portal.address, detail.persistent_portal.port) == (PORTAL, 3260)
    assert detail.initiator_name == "iqn.2009-06.org.miglab.sandbox:xdev-h1"
    # tgt's LUN 0 is its controller (no disk); LUN 1 is the guest's disk.
    assert [(d.lun, d.device) for d in detail.luns] == [(0, None), (1, "sda")]
    assert detail.disk_for_lun(1) == "sda"


def test_iscsiadm_exit_codes_read_by_meaning() -> None:
    _out, err, rc = read(ISCSI, "login-again")
    assert rc == 15 and classify(rc, err).kind is OutcomeKind.ALREADY_LOGGED_IN
    _out, err, rc = read(ISCSI, "login-unknown")
    assert rc == 21 and classify(rc, err).kind is OutcomeKind.NOTHING_FOUND
    _out, err, rc = read(ISCSI, "discovery-st-refused")
    assert rc == 11 and classify(rc, err).kind is OutcomeKind.UNREACHABLE


async def test_the_preflight_check_reads_xens_version() -> None:
    # `miglab check --connect` shows the Xen version of each host with xl (issue 11);
    # the simulated Xen 4.4 host answers `xl info xen_version` as 4.9+ and 4.4 do.
    from backend.check import probe_host
    from tests.unit.test_sim_formats import InProcess, ready_world

    world = await ready_world()
    xen = await probe_host(InProcess(world, "xenserver1"), 0.0)
    storage = await probe_host(InProcess(world, "iSCSIserver"), 0.0)
    assert xen.xen_version == "4.4.1" and xen.error is None
    assert storage.xen_version is None and storage.error is None


# xl_info.c: "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f"
XL_LIST_ROW = re.compile(
    r"\S.{39} [ \d]{4}\d [ \d]{4}\d [ \d]{4}\d     [-rbpscwSd]{6}  [ \d.]{7}\d"
)


async def test_the_simulated_xl_list_has_the_real_layout() -> None:
    # xl_info.c's format has not changed from 4.4 (the simulated lab) to 4.17 (here).
    from tests.unit.test_sim_formats import ready_world, run

    world = await ready_world()
    simulated = (await run(world, "xenserver1", ["xl", "list"])).text("stdout").splitlines()
    real = read(XL, "xl-list-host2-guest")[0].splitlines()
    assert simulated[0] == real[0]  # the header, TABs included
    assert all(XL_LIST_ROW.fullmatch(line) for line in real[1:]), real
    assert len(simulated) > 1
    assert all(XL_LIST_ROW.fullmatch(line) for line in simulated[1:]), simulated


async def test_the_simulated_iscsiadm_session_tree_has_the_real_lines() -> None:
    # The same keys, in the same order, with the same TAB depth as the real dom0's.
    from tests.unit.test_sim_formats import ready_world, run

    world = await ready_world()
    argv = ["iscsiadm", "-m", "session", "-P", "3"]
    simulated = (await run(world, "xenserver1", argv)).text("stdout").splitlines()
    real = read(ISCSI, "session-P3")[0].splitlines()

    def keys(lines: list[str]) -> list[str]:
        return [
            line[: len(line) - len(line.lstrip("\t"))]
            + re.sub(r"disk \S+", "disk", line.strip()).split(":")[0]
            for line in lines
            if ":" in line and not line.lstrip().startswith("scsi")
        ]

    assert keys(simulated) == keys(real)
