"""LabController holds the safety rules the console asks for (issue 12).

While the guest runs from the shared disk, booting a second copy, logging its host out
of the disk and removing the disk's export are refused, dry run or not, before any
command that changes a host is sent. What a cancel sends beyond stopping commands is
the driver's word (QEMU's QMP ``migrate_cancel``; nothing for xl), not the console's.
The Xen hosts answer ``xl list`` with what real xl 4.17 printed (tests/data/xl/real-4.17).
"""

from __future__ import annotations

import pytest

from backend.config import parse_lab
from backend.drivers.base import HostCommand, Refused
from backend.drivers.hv_qemu import QemuDriver
from backend.events import Event
from backend.lab import LabController
from tests.unit.test_lab_where import DOM0_ONLY, GUEST_LISTED, LAB, Answers, listed


def guest_on_xen2() -> tuple[LabController, dict[str, Answers]]:
    """A lab whose hosts answer only ``xl list`` (any other command fails the test)."""
    events: list[Event] = []
    runners = {
        "xen1": Answers("xen1", listed("xen1", DOM0_ONLY)),
        "xen2": Answers("xen2", listed("xen2", GUEST_LISTED)),
        "storage": Answers("storage", listed("storage", "")),
    }
    return LabController(parse_lab(LAB), dict(runners), events.append), runners


async def test_the_guests_hosts_are_where_it_is_alive() -> None:
    controller, _ = guest_on_xen2()
    assert await controller.guest_hosts() == ["xen2"]


@pytest.mark.parametrize("dry_run", [True, False])
async def test_boot_of_a_second_copy_is_refused(dry_run: bool) -> None:
    controller, runners = guest_on_xen2()
    with pytest.raises(Refused, match="already running on xen2"):
        await controller.boot("xen1", dry_run=dry_run)
    assert all(argv == ["xl", "list"] for r in runners.values() for argv in r.asked)


@pytest.mark.parametrize("dry_run", [True, False])
async def test_logout_of_the_guests_host_is_refused(dry_run: bool) -> None:
    controller, runners = guest_on_xen2()
    with pytest.raises(Refused) as refused:
        await controller.logout("xen2", dry_run=dry_run)
    text = str(refused.value)
    assert "the guest runs on xen2" in text and "logging xen2 out" in text
    assert runners["storage"].asked == []


@pytest.mark.parametrize("dry_run", [True, False])
async def test_unexport_is_refused_while_the_guest_runs_anywhere(dry_run: bool) -> None:
    controller, runners = guest_on_xen2()
    with pytest.raises(Refused) as refused:
        await controller.unexport(dry_run=dry_run)
    assert "removing the export" in str(refused.value)
    assert runners["storage"].asked == []  # the target was never asked, let alone changed


async def test_xl_cancels_by_stopping_its_command_and_plans_nothing_more() -> None:
    controller, _ = guest_on_xen2()
    assert await controller.plan_cancel_migration() == []


def test_qemu_cancels_over_qmp_on_the_source() -> None:
    lab = parse_lab(
        LAB.replace('driver = "xen"', 'driver = "qemu"').replace(
            'config = "/etc/xen/guest.cfg"\n', '[guest.qemu]\nkernel = "/var/lib/miglab/vmlinuz"\n'
        )
    )
    driver = QemuDriver(lab, {}, lambda event: None)
    socket = driver.files("xen1").qmp
    assert driver.cancel_plan("xen1") == [HostCommand("xen1", ("qmp", socket, "migrate_cancel"))]
