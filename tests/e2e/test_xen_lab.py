"""The Xen lab for real: `miglab sandbox up --hypervisor xen`, real xl, real iscsiadm.

Two Xen 4.17 hosts (QEMU TCG VMs with a Debian dom0) and the storage namespace's tgtd;
the console's own path (Hosts, LabController, the bus, a session log) as in
test_lab_on_sandbox.py, whose helpers this module reuses. One sandbox for the module,
in its own directory (the QEMU sandbox of the session is not touched).

Slow: under TCG one `xl migrate` of the 256 MiB guest takes most of a minute here (the
stream's ssh in dom0 runs at 3-4 MB/s). So the module migrates as few times as what it proves
needs, each migration proving several things, the tests in this order:
host1 -> host2 under a 10 ms ping (test 3); back to host2 -> host1 as `miglab run
migrate-ping --quick` (test 4); host1 -> host2 as `migrate-sysbench-cpu --quick` (test 5);
then a migration back broken by killing the destination's sshd (test 6). Each test
still sets up the placement it needs if run alone. It runs in CI (`make test`): with
one dom0 vCPU (xen_host.py) the module takes 5-7 min here on a warm sandbox and 7 min 16 s
with a cold cache, a migration about 45-60 s idle and up to 100 s under sysbench.

The run where migrate-sysbench-cpu's "after" had no samples was a guest that died
seconds after a migration xl and the driver had seen succeed (its SSH connection went
silent; 60 s later the rebooted guest answered it with a reset), so sysbench said
nothing more, the stop's kill found no guest to open a channel on ("opening a channel
took too long"), and the run still ended "ok". The runner now reads the guest's boot id
at the end of the stage and fails such a run. The guest dies under QEMU 7.2's TCG
emulation of SVM: a migration (test 3) or scenario run (:func:`run_cli`) that fails
because its vCPU triple-faulted (a new `Triple fault` in Xen's log) is an expected
failure; any other failure fails. On 2026-12-05, with the fix, the 5 runs of these
hosts exited 0 (the last cold), three of them with one expected failure each (test 3
twice, test 5): the idle guest triple-faults as test 3's migration begins or suspends it.
Single-threaded TCG (``-accel tcg,thread=single``: 4-4.6 min) lost the guest under
sysbench in 2 of 2 runs with no reason in Xen's log, so the hosts keep a QEMU thread
per vCPU.
``MIGLAB_REQUIRE_SYSTEM=1`` makes a missing prerequisite fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.config import load_lab
from backend.drivers.base import Refused
from backend.drivers.hv_xen import XenDriver
from backend.drivers.initiator import OpenIscsiInitiator
from backend.drivers.parse_iscsiadm import by_path
from backend.events import InitiatorSession, MigrationFinished, MigrationProgress, Note
from backend.experiments.report import build_report
from backend.probes.ping import unreachable_gaps
from backend.session import read_session
from backend.transport.base import TransportError
from tests.conftest import need, need_root
from tests.e2e.conftest import PROGRAMS, SandboxUnderTest, miglab
from tests.e2e.test_lab_on_sandbox import (
    Console,
    StoragePing,
    close_console,
    open_console,
    open_guest,
    ping_once,
    until,
    wait_until_answers,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]

HV_HOSTS = ("host1", "host2")


def xen_sandbox_dir() -> Path:
    base = os.environ.get("MIGLAB_CACHE_DIR") or str(Path.home() / ".cache" / "miglab")
    return Path(base) / "sandbox-xen-e2e"


@pytest.fixture(scope="module")
def xen_lab() -> Iterator[SandboxUnderTest]:
    need_root()
    need(*PROGRAMS)
    directory = xen_sandbox_dir()
    started = time.monotonic()
    up = miglab("sandbox", "up", "--hypervisor", "xen", "--dir", str(directory), timeout=1500)
    elapsed = time.monotonic() - started
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    print(f"\nmiglab sandbox up --hypervisor xen: {elapsed:.1f} s wall\n{up.stdout}")
    lab_file = directory / "lab.toml"
    try:
        yield SandboxUnderTest(directory, lab_file, load_lab(lab_file), elapsed)
    finally:
        down = miglab("sandbox", "down", "--dir", str(directory), timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture
async def console(xen_lab: SandboxUnderTest, tmp_path: Path) -> AsyncIterator[Console]:
    opened = await open_console(xen_lab, tmp_path / "session.jsonl")
    try:
        yield opened
    finally:
        await close_console(opened)


def xen(console: Console) -> XenDriver:
    driver = console.controller.hypervisor
    assert isinstance(driver, XenDriver)
    return driver


async def guest_on(console: Console, host: str, *, fresh: bool = False) -> None:
    """The guest runs on ``host`` only (booted there afresh if it is not so, or if
    ``fresh``)."""
    placement = await console.controller.where()
    if placement.running_on == [host] and not fresh:
        return
    for each in HV_HOSTS:
        if await xen(console).copies(each):
            await xen(console).destroy(each)
    booted = await console.controller.boot(host)
    assert booted.changed, booted
    await wait_until_answers(console)


def test_check_connect_reports_both_dom0s_with_xl_iscsiadm_and_xen(
    xen_lab: SandboxUnderTest,
) -> None:
    checked = miglab("check", "--connect", "--lab", str(xen_lab.lab_file), timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = {line.split()[0]: line for line in checked.stdout.splitlines() if line.strip()}
    for host in HV_HOSTS:
        assert "xl" in lines[host].split() and "iscsiadm" in lines[host].split(), lines[host]
        assert "Xen 4.17." in lines[host], lines[host]


async def test_prepare_logs_both_dom0s_in_and_twice_changes_nothing(console: Console) -> None:
    controller, storage = console.controller, console.lab.storage
    initiator = controller.initiator
    assert isinstance(initiator, OpenIscsiInitiator)
    done = await controller.prepare()
    again = await controller.prepare()
    assert not again.changed, again
    logins = console.of(InitiatorSession)
    assert {e.host for e in logins if e.state == "logged-in"} == set(HV_HOSTS)
    assert all(not e.changed for e in logins[-2:]), logins
    disk = by_path(storage.portal.address, storage.portal.port, storage.iqn, storage.lun)
    for host in HV_HOSTS:
        # Read from the real `iscsiadm -m session -P 3` of that dom0.
        [session] = [s for s in await initiator.sessions(host) if s.iqn == storage.iqn]
        assert session.device == disk, (host, session)
        # mdev made udev's by-path name: the same on both dom0s.
        assert (await console.hosts[host].run(["test", "-b", disk])).ok, host
    assert done.changed or any(e.changed for e in logins)


async def test_boot_ping_ssh_and_migrate_to_host2_under_a_10ms_ping(
    xen_lab: SandboxUnderTest, console: Console
) -> None:
    await console.controller.prepare()
    await guest_on(console, "host1")
    guest = await open_guest(console)
    assert (await guest.run(["uname", "-r"])).check().stdout.strip().endswith("-amd64")
    assert (await guest.run(["grep", "-q", " /mnt/disk ", "/proc/mounts"])).ok

    faults = await asyncio.to_thread(triple_faults, xen_lab)
    ping = StoragePing(console, interval_s=0.01)
    try:
        await until(lambda: len(ping.replies()) >= 50, "replies before the migration")
        outcome = await console.controller.migrate("host2")
        if not outcome.ok and await asyncio.to_thread(triple_faults, xen_lab) > faults:
            # The idle guest's vCPU has triple-faulted as xl suspended it (QEMU's SVM).
            pytest.xfail(f"the guest's vCPU triple-faulted under QEMU's emulated SVM: {outcome}")
        after = len(ping.replies())
        await until(lambda: len(ping.replies()) >= after + 100, "replies after the migration")
    finally:
        await ping.stop()
    assert outcome.ok, outcome.error
    [finished] = console.of(MigrationFinished)
    assert finished.ok and (finished.source, finished.dest) == ("host1", "host2")
    assert outcome.total_time_ms is not None and outcome.total_time_ms > 0
    # Measured by the driver between xl -vvv's suspend request and "Domain started".
    assert outcome.downtime_ms is not None and 0 < outcome.downtime_ms < outcome.total_time_ms

    gaps = unreachable_gaps(ping.samples)
    closed = [g for g in gaps if g.duration_s is not None]
    unreachable = max((g.duration_s or 0.0 for g in closed), default=0.0)
    assert unreachable > 0, gaps  # a stop-and-copy under TCG is never silent-free
    text = (
        f"ping every 10 ms from storage: unreachable for {unreachable:.3f} s "
        f"({sum(g.lost_count for g in closed)} lost) while the guest migrated host1 -> "
        f"host2; xl migrate took {outcome.total_time_ms / 1000:.1f} s, downtime (xl's "
        f"suspend request to 'Domain started') {outcome.downtime_ms / 1000:.3f} s"
    )
    console.note(text)
    print(f"\n{text}")
    assert [s for s in ping.replies() if s.t > finished.t], "no reply from the guest on host2"

    placement = await console.controller.where()
    assert placement.running_on == ["host2"] and not placement.unreachable, placement
    assert [d.name for d in await xen(console).copies("host1")] == []  # xl list on host1
    assert await ping_once(console)

    await console.writer.close()
    session = await asyncio.to_thread(read_session, console.log)
    assert session.bad_lines == [] and not session.cut_short
    xl_events = [e.xl_event for e in session.events if isinstance(e, MigrationProgress)]
    # What real xl printed, in its order (tests/data/xl/real-4.17).
    for event in (
        "receiver-ready",
        "saving-domain",
        "suspend-requested",
        "domain-suspended",
        "transfer-complete",
        "go",
        "target-started",
        "success",
    ):
        assert event in xl_events, xl_events
    assert xl_events.index("saving-domain") < xl_events.index("suspend-requested")
    assert xl_events.index("suspend-requested") < xl_events.index("go")
    assert text in [e.text for e in session.events if isinstance(e, Note)]
    [migration] = build_report(session).analysis.migrations
    assert migration.unreachable_s == pytest.approx(unreachable)


async def test_boot_on_host1_while_it_runs_on_host2_is_refused(console: Console) -> None:
    await guest_on(console, "host2")
    with pytest.raises(Refused) as refused:
        await console.controller.boot("host1")
    assert "host2" in str(refused.value), refused.value
    assert (await console.controller.where()).running_on == ["host2"]


def guest_consoles(sandbox: SandboxUnderTest) -> str:
    """The end of the guest's console on each dom0 (xenconsoled's log) and of the log of
    the xl that watches the domain (it restarts it on reboot): what a failure shows,
    since dom0 lives in RAM and `down` takes it away."""
    parts = []
    for host in HV_HOSTS:
        argv = [
            "ssh", "-i", str(sandbox.directory / "keys" / "client_ed25519"),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={sandbox.directory / 'keys' / 'known_hosts'}",
            f"root@{sandbox.address(host)}",
            # The watcher is `xl create`'s (xl-miglab-guest.log) or, on a host the guest
            # migrated to, `xl migrate-receive`'s (xl-miglab-guest--incoming.log); Xen's
            # console says when a domain triple-faulted (XEN-SUSPEND.md, issue 11).
            "tail -n 60 /var/log/xen/console/guest-miglab-guest.log; "
            "tail -n 40 /var/log/xen/xl-miglab-guest*.log; "
            "xl dmesg | grep -A 14 -E 'Triple fault|crashed'; echo '--- xl dmesg:'; "
            "xl dmesg | tail -n 25; xl list",
        ]  # fmt: skip
        try:
            got = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            parts.append(
                f"\n--- {host}: guest console, xl logs, xl dmesg faults, xl list ---\n"
                f"{got.stdout}{got.stderr}"
            )
        except subprocess.TimeoutExpired:
            parts.append(f"\n--- {host}: no answer in 60 s ---")
    return "".join(parts)


def triple_faults(sandbox: SandboxUnderTest) -> int:
    """How many guest vCPU triple faults Xen has logged on both dom0s (`xl dmesg`)."""
    count = 0
    for host in HV_HOSTS:
        argv = [
            "ssh", "-i", str(sandbox.directory / "keys" / "client_ed25519"),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={sandbox.directory / 'keys' / 'known_hosts'}",
            f"root@{sandbox.address(host)}", "xl dmesg | grep -c 'Triple fault' || true",
        ]  # fmt: skip
        got = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        count += int(got.stdout.strip() or 0) if got.stdout.strip().isdigit() else 0
    return count


def run_cli(sandbox: SandboxUnderTest, scenario: str, log: Path) -> dict[str, Any]:
    """`miglab run SCENARIO --quick`, then `miglab report --format json` of its log (as
    test_runner_on_sandbox.py's, with time for a Xen migration under TCG).

    A run that failed because the guest's vCPU triple-faulted (a new `Triple fault` in
    Xen's log) is an expected failure, not miglab's: QEMU 7.2's emulation of SVM under
    load (README, "The sandbox"). It was rare with one dom0 vCPU; the run still says
    what happened, and the test says why it did not count it."""
    lab = str(sandbox.lab_file)
    faults = triple_faults(sandbox)
    ran = miglab("run", scenario, "--lab", lab, "--quick", "--log", str(log), timeout=1500)
    if ran.returncode != 0 and triple_faults(sandbox) > faults:
        pytest.xfail(
            f"the guest's vCPU triple-faulted under QEMU's emulated SVM: {ran.stdout[-600:]}"
        )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:] + guest_consoles(sandbox)
    print(f"\n{ran.stdout[-2500:]}")
    reported = miglab("report", str(log), "--format", "json")
    assert reported.returncode == 0, reported.stderr
    data: dict[str, Any] = json.loads(reported.stdout)
    assert data["scenario"] == scenario and not data["cut_short"] and not data["simulated"]
    return data


def test_migrate_ping_quick_migrates_it_back(xen_lab: SandboxUnderTest, tmp_path: Path) -> None:
    """The migration back (host2 -> host1 after test 3) as the CLI's scenario run."""
    data = run_cli(xen_lab, "migrate-ping", tmp_path / "migrate-ping.jsonl")
    [migration] = data["migrations"]
    assert migration["from"] != migration["to"], migration
    assert migration["total_s"] is not None and migration["total_s"] > 0
    assert migration["downtime_ms"] is not None and migration["downtime_ms"] > 0
    assert migration["unreachable_s"] is not None and migration["unreachable_s"] > 0
    rtt = data["probes"]["ping.rtt_ms"]
    for part in ("baseline", "during", "after"):
        assert rtt[part] is not None, (part, rtt)


def test_migrate_sysbench_cpu_quick_on_the_xen_lab(
    xen_lab: SandboxUnderTest, tmp_path: Path
) -> None:
    data = run_cli(xen_lab, "migrate-sysbench-cpu", tmp_path / "migrate-sysbench-cpu.jsonl")
    [migration] = data["migrations"]
    assert migration["from"] != migration["to"], migration
    assert migration["total_s"] is not None and migration["total_s"] > 0
    assert migration["downtime_ms"] is not None and migration["downtime_ms"] > 0
    # This scenario runs no ping: the session's own, from the storage node, measured it.
    assert migration["unreachable_s"] is not None and migration["unreachable_s"] > 0
    assert data["probes"]["ping.rtt_ms"]["baseline"] is not None
    cpu = data["probes"]["sysbench-cpu.eps"]
    for part in ("baseline", "during", "after"):
        assert cpu[part] is not None and cpu[part] > 0, (part, cpu)


async def test_destination_sshd_killed_mid_migration(console: Console) -> None:
    """Last: it leaves the guest where it was (no migration to wait for after it)."""
    # A freshly booted guest: this test is about the broken transport, not about what
    # earlier migrations left (in one run the guest had rebooted during the sysbench one).
    await guest_on(console, "host1", fresh=True)
    source, dest = "host1", "host2"
    migrating = asyncio.ensure_future(console.controller.migrate(dest))
    # Once dest receives (its copy exists), kill every sshd of dest's dom0: the
    # receiver's connection with it. dom0 restarts its sshd a second later.
    while not await xen(console).copies(dest):
        assert not migrating.done(), migrating.result()
        await asyncio.sleep(0.5)
    killer = shlex.join(["sh", "-c", "kill -9 $(pidof sshd)"])  # ssh's one remote string
    await console.hosts[source].run(["ssh", console.lab.host(dest).address, killer], timeout=60)
    outcome = await migrating
    assert not outcome.ok, "the migration succeeded with its destination's sshd killed"
    assert outcome.downtime_ms is None  # a failed migration has no downtime to give
    # dom0 restarts its sshd: until the console reaches dest again.
    while True:
        try:
            if (await console.hosts[dest].run(["true"], timeout=30)).ok:
                break
        except TransportError:
            pass
        await asyncio.sleep(1.0)
    placement = await console.controller.where()
    # The guest runs on exactly one host, and the log is whole.
    assert len(placement.running_on) == 1 and not placement.unreachable, placement
    await console.writer.close()
    session = await asyncio.to_thread(read_session, console.log)
    assert session.bad_lines == [] and not session.cut_short
    [logged] = [e for e in session.events if isinstance(e, MigrationFinished)]
    assert not logged.ok and logged.error


def test_up_after_a_crash_of_the_xen_hosts_cleans_up_and_comes_back(
    xen_lab: SandboxUnderTest,
) -> None:
    """Last: both Xen hosts' QEMUs killed (the crash); `up` tears down what is left and
    builds the lab again (the fixture's `down` then takes that one down)."""
    crashed = xen_lab.state()
    qemus = [p for p in crashed["processes"] if p["role"].startswith("xen@")]
    assert len(qemus) == 2, crashed["processes"]
    for process in qemus:
        os.kill(process["pid"], signal.SIGKILL)
    status = miglab("sandbox", "status", "--dir", str(xen_lab.directory))
    assert status.returncode == 1, status.stdout
    assert "NOT COMPLETE" in status.stdout and "MISSING" in status.stdout

    up = miglab(
        "sandbox", "up", "--hypervisor", "xen", "--dir", str(xen_lab.directory), timeout=1500
    )
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    assert "taking down what the previous run left" in up.stdout
    fresh = xen_lab.state()
    assert {p["pid"] for p in fresh["processes"]}.isdisjoint(p["pid"] for p in crashed["processes"])
    checked = miglab("check", "--connect", "--lab", str(xen_lab.lab_file), timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
