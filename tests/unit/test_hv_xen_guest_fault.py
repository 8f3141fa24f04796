"""A guest that dies while ``xl migrate`` runs: the driver says so, with what xl and Xen said.

Replays what the real Xen 4.17 lab printed (tests/data/xl/real-4.17, captured in the
sandbox's dom0s): the PVH guest, busy with sysbench cpu (20 threads), triple-faulted as
``xl -vvv migrate`` began; Xen turned the triple fault into a reboot, the ``xl`` that
watches the domain restarted it (on_reboot = "restart") as a new domain, and the sender
failed with "unable to get domain type for domid=1". The runner below answers each
command with the capture of that command, in the order they were run there.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from backend.config import parse_lab
from backend.drivers.hv_xen import XenDriver
from backend.drivers.parse_xl import domain_faults
from backend.events import Event, MigrationFinished
from backend.transport.base import (
    CommandResult,
    HostRunner,
    LineCallback,
    StreamReaderLike,
    StreamWriterLike,
)
from tests.conftest import DATA

REAL = DATA / "xl" / "real-4.17"
LAB = """\
[lab]
name = "xen-sandbox"
link_mbit = 100
[hosts.storage]
address = "198.18.0.10"
[hosts.host1]
address = "198.18.0.11"
[hosts.host2]
address = "198.18.0.12"
[storage]
host = "storage"
driver = "tgt"
iqn = "iqn.2009-06.org.miglab.sandbox:mlb0-disk"
device = "/srv/disk.img"
portal = "198.18.0.10:3260"
[hypervisor]
driver = "xen"
hosts = ["host1", "host2"]
[guest]
name = "miglab-guest"
address = "198.18.0.50"
vcpus = 2
memory_mb = 256
config = "/etc/xen/miglab-guest.cfg"
"""


Answer = str | tuple[int, str, str]


def capture(name: Answer) -> tuple[int, str, str]:
    """A real capture by name: exit status, stdout, stderr (a missing stream printed
    nothing); or an answer given as such."""
    if isinstance(name, tuple):
        return name
    stdout, stderr = REAL / f"{name}.stdout", REAL / f"{name}.stderr"
    return (
        int((REAL / f"{name}.rc").read_text()),
        stdout.read_text() if stdout.exists() else "",
        stderr.read_text() if stderr.exists() else "",
    )


class Replay(HostRunner):
    """One dom0: each command (its argv without the program) answered by the next
    capture queued for it; a command with none left fails the test."""

    def __init__(self, name: str, answers: dict[tuple[str, ...], list[Answer]]) -> None:
        self.name = name
        self.answers = answers
        self.ran: list[tuple[str, ...]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = 60.0,
        on_line: LineCallback | None = None,
        log_output: bool = True,
        long_running: bool = False,
        redact: Sequence[str] = (),
    ) -> CommandResult:
        key = tuple(argv[1:])
        self.ran.append(key)
        queued = self.answers.get(key)
        assert queued, f"{self.name}: no capture left for {list(argv)}"
        status, stdout, stderr = capture(queued.pop(0))
        if on_line is not None:
            for line in stderr.splitlines():
                on_line("stderr", line)
        return CommandResult(self.name, list(argv), status, stdout, stderr, 0.1)

    async def open_unix_stream(self, path: str) -> tuple[StreamReaderLike, StreamWriterLike]:
        raise AssertionError("xl needs no socket")

    async def close(self) -> None:
        return None

    @property
    def connected(self) -> bool:
        return True


def test_xen_console_lines_about_the_faulted_domain_only() -> None:
    dmesg = (REAL / "xl-dmesg-host1-guest-triple-fault.stdout").read_text()
    said = domain_faults(dmesg, 1)
    assert said[0] == "d1v0 Triple fault - invoking HVM shutdown action 1"
    assert "*** Dumping Dom1 vcpu#0 state: ***" in said
    # The vCPU's code segment and RIP were Xen's own (e008, ffff82d0...): the guest's
    # state was not the guest's when it faulted.
    assert "RIP:    e008:[<ffff82d0402044a5>]" in said
    assert any(line.endswith("cs: e008") for line in said)
    assert domain_faults(dmesg, 2) == []  # the restarted domain did nothing of the kind
    # With Xen's console_timestamps the stamp goes too.
    stamped = "(XEN) [  12.500000] d7v1 Triple fault - invoking HVM shutdown action 1\n"
    assert domain_faults(stamped, 7) == ["d7v1 Triple fault - invoking HVM shutdown action 1"]


def test_xen_console_crash_lines_and_unknown_lines() -> None:
    text = "\n".join(
        [
            "(XEN) domain_crash called from arch/x86/hvm/svm/svm.c:2570",
            "(XEN) Domain 7 (vcpu#1) crashed on cpu#0:",
            "(XEN) Domain 17 (vcpu#0) crashed on cpu#1:",
            "(XEN) d7v0 some line Xen has not printed yet",
            "not a Xen line at all \x1b[31m",
        ]
    )
    assert domain_faults(text, 7) == [
        "domain_crash called from arch/x86/hvm/svm/svm.c:2570",
        "Domain 7 (vcpu#1) crashed on cpu#0:",
    ]
    assert domain_faults("", 7) == []


@pytest.fixture
def lab() -> tuple[XenDriver, dict[str, Replay], list[Event]]:
    host1 = Replay(
        "host1",
        {
            ("list",): [
                "xl-list-host1-guest-before",  # migrate looks at the source
                "xl-list-host1-guest-restarted",  # where is the guest now
                "xl-list-host1-guest-restarted",  # what became of domain 1
            ],
            ("-vvv", "migrate", "miglab-guest", "198.18.0.12"): [
                "xl-vvv-migrate-pvh-guest-rebooted"
            ],
            ("dmesg",): ["xl-dmesg-host1-guest-triple-fault"],
        },
    )
    # host2 had only Domain-0 before and after (the receiver destroyed its copy); its
    # `xl list` is the real one of a dom0-only host.
    host2 = Replay("host2", {("list",): ["xl-list-host1-dom0-only"] * 2})
    events: list[Event] = []
    runners: dict[str, Replay] = {"host1": host1, "host2": host2}
    driver = XenDriver(parse_lab(LAB), runners, events.append)
    return driver, runners, events


async def test_a_guest_restarted_mid_migration_is_a_failure_naming_xl_and_xen(
    lab: tuple[XenDriver, dict[str, Replay], list[Event]],
) -> None:
    driver, runners, events = lab
    outcome = await driver.migrate("host1", "host2")
    assert not outcome.ok and outcome.error is not None
    error = outcome.error
    # What xl said: its closing line and the libxl error behind it.
    assert error.startswith("Migration failed, resuming at sender.")
    assert "unable to get domain type for domid=1" in error
    assert "libxl_domain_suspend failed (rc=-3)" in error
    # Where the guest is, and that it is not the guest that was migrating.
    assert "the guest runs on host1" in error
    assert "domain 1 on host1 died" in error and "new domain 2 (blocked)" in error
    # What the hypervisor said.
    assert "Xen on host1 said of domain 1: d1v0 Triple fault" in error
    assert "RIP:    e008:[<ffff82d0402044a5>]" in error
    [finished] = [e for e in events if isinstance(e, MigrationFinished)]
    assert not finished.ok and finished.error == error
    assert ("dmesg",) in runners["host1"].ran


async def test_a_guest_that_stays_put_needs_no_xen_console(
    lab: tuple[XenDriver, dict[str, Replay], list[Event]],
) -> None:
    """The same failure with domain 1 still listed afterwards: nothing died, so the
    driver neither reads ``xl dmesg`` nor says the guest was restarted."""
    driver, runners, _events = lab
    runners["host1"].answers[("list",)] = ["xl-list-host1-guest-before"] * 3
    outcome = await driver.migrate("host1", "host2")
    assert not outcome.ok and outcome.error is not None
    assert "died" not in outcome.error and "Xen on host1" not in outcome.error
    assert ("dmesg",) not in runners["host1"].ran


async def test_a_crashed_domain_kept_by_on_crash_preserve_is_named(
    lab: tuple[XenDriver, dict[str, Replay], list[Event]],
) -> None:
    """on_crash = "preserve" keeps domain 1 listed, shut down for a crash (``---sc-``,
    xl_info.c's state letters); the driver says so and still reads Xen's console."""
    driver, runners, _events = lab
    before = capture("xl-list-host1-guest-before")[1]
    crashed = before.replace("     r-----      80.4", "     ---sc-      80.4")
    assert crashed != before
    runners["host1"].answers[("list",)] = [
        "xl-list-host1-guest-before",
        (0, crashed, ""),
        (0, crashed, ""),
    ]
    outcome = await driver.migrate("host1", "host2")
    assert outcome.error is not None
    assert "its domain 1 on host1 is crashed" in outcome.error
    assert "Xen on host1 said of domain 1: d1v0 Triple fault" in outcome.error


async def test_a_success_whose_guest_then_dies_at_the_target_is_a_failure() -> None:
    """Run 2 (XEN-SUSPEND.md): ``xl -v migrate`` said ``Migration successful.``, but
    the restored guest (domain 1 on host2, xc's restore line) triple-faulted at once and
    xl restarted it as domain 2. (The driver runs -vvv; this capture is -v: the same
    lines without libxl's debug ones.)"""
    host1 = Replay(
        "host1",
        {
            ("list",): ["xl-list-host1-guest-before-run2", "xl-list-host1-dom0-only"],
            ("-vvv", "migrate", "miglab-guest", "198.18.0.12"): [
                "xl-v-migrate-pvh-success-guest-rebooted-at-target"
            ],
        },
    )
    host2 = Replay(
        "host2",
        {
            ("list",): ["xl-list-host1-dom0-only", "xl-list-host2-guest-restarted"],
            ("dmesg",): ["xl-dmesg-host2-restored-guest-triple-fault"],
        },
    )
    events: list[Event] = []
    driver = XenDriver(parse_lab(LAB), {"host1": host1, "host2": host2}, events.append)
    outcome = await driver.migrate("host1", "host2")
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.startswith("xl reported success, but its domain 1 on host2 died")
    assert "new domain 2 (running)" in outcome.error
    assert "Xen on host2 said of domain 1: d1v1 Triple fault" in outcome.error
    assert "RIP:    0010:[<ffffffff81146a40>]" in outcome.error
    assert outcome.downtime_ms is None  # no downtime of a guest that did not survive
    [finished] = [e for e in events if isinstance(e, MigrationFinished)]
    assert not finished.ok
    assert ("dmesg",) not in host1.ran  # the source had no reason to be asked


async def test_failed_to_suspend_at_sender_names_the_triple_fault() -> None:
    """Run 3: the e2e's failure, ``Migration failed, failed to suspend at sender.``
    (``domain did not respond to suspend request: No such process``), with 2 sysbench
    threads: domain 2 triple-faulted in pvclock_clocksource_read during pre-copy."""
    host2 = Replay(
        "host2",
        {
            ("list",): [
                "xl-list-host2-guest-before-run3",
                "xl-list-host2-guest-restarted-run3",
            ],
            ("-vvv", "migrate", "miglab-guest", "198.18.0.11"): [
                "xl-vvv-migrate-pvh-failed-to-suspend"
            ],
            ("dmesg",): ["xl-dmesg-host2-guest-triple-fault-2"],
        },
    )
    host1 = Replay("host1", {("list",): ["xl-list-host1-dom0-only"] * 2})
    driver = XenDriver(parse_lab(LAB), {"host1": host1, "host2": host2}, lambda _e: None)
    outcome = await driver.migrate("host2", "host1")
    assert outcome.error is not None and not outcome.ok
    assert outcome.error.startswith("Migration failed, failed to suspend at sender.")
    assert "domain did not respond to suspend request: No such process" in outcome.error
    assert "its domain 2 on host2 died" in outcome.error and "new domain 3" in outcome.error
    assert "d2v0 Triple fault - invoking HVM shutdown action 1" in outcome.error
    assert "RIP:    0010:[<ffffffff8107ee05>]" in outcome.error
