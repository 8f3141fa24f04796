"""The qemu hypervisor driver against real QEMU (TCG), a real tgtd and a real sshd.

Two "hosts", h1 and h2, are this machine: as local runners, or as SSH hosts of the
test sshd (so QMP really travels over the SSH connection's Unix-socket stream). The
guest's disk is a LUN of a tgtd started here, opened by QEMU's own iSCSI initiator on
both hosts: shared storage, as in the study. The guest prints a heartbeat with its
uptime on its serial console, which shows it kept running across a migration.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.config import LabConfig, parse_lab
from backend.drivers.base import DomainInfo, DriverError, HostCommand, Refused
from backend.drivers.factories import hypervisor_driver
from backend.drivers.hv_qemu import ConvergencePolicy, QemuDriver
from backend.drivers.qmp import MigrationStatus
from backend.events import DomainState, Event, MigrationFinished, MigrationProgress, Note
from backend.sandbox.guest_image import (
    HEARTBEAT_MARKER,
    READY_MARKER,
    console_offset,
    wait_for_console,
)
from backend.transport.base import HostRunner
from backend.transport.hosts import Hosts
from backend.transport.local import LocalRunner
from backend.transport.ssh import SshHost
from tests.conftest import need, need_root
from tests.support.qemu_lab import (
    IQN,
    Tgtd,
    dirtier_image,
    kill_qemus,
    local_hosts_toml,
    qemu_lab_toml,
    qemu_pids,
)
from tests.support.sshd import Sshd, free_port
from tests.support.waiting import NO_DEADLINE, until

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]  # a cold image build downloads


@pytest.fixture(scope="module")
def tgtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tgtd]:
    need("tgtd", "tgtadm")
    need_root()  # tgtd's control socket lives in /var/run/tgtd
    server = Tgtd(tmp_path_factory.mktemp("tgtd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def run_dir() -> AsyncIterator[Path]:
    # Short: a Unix socket path must stay under 108 bytes.
    path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="miglab-hv-"))
    yield path
    kill_qemus(path)  # only after a failed test: the tests stop their own
    await asyncio.to_thread(shutil.rmtree, path, True)


class Events(list[Event]):
    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self if isinstance(e, kind)]

    def notes(self, text: str) -> list[str]:
        return [n.text for n in self.of(Note) if text in n.text]


def uptimes(log: Path) -> list[float]:
    text = log.read_text(errors="replace")
    return [float(u) for u in re.findall(rf"{HEARTBEAT_MARKER} uptime=([\d.]+)", text)]


async def next_heartbeat(log: Path, after: float) -> float:
    """An uptime printed by the guest later than ``after`` (however slow the machine: an
    emulated guest on a loaded host prints late; a hang is the test's timeout)."""
    await until(lambda: any(u > after for u in uptimes(log)), poll_s=0.2)
    return [u for u in uptimes(log) if u > after][-1]


def with_hypervisor(lab: LabConfig, **changes: Any) -> LabConfig:
    return lab.model_copy(update={"hypervisor": lab.hypervisor.model_copy(update=changes)})


async def qemu_lab(
    tgtd: Tgtd, run_dir: Path, *, hosts_toml: str | None = None, **options: Any
) -> LabConfig:
    """A QEMU lab of two hosts (local ones unless ``hosts_toml``) running the dirtier
    guest image from ``tgtd``; ``options`` go to :func:`qemu_lab_toml`."""
    need("qemu-system-x86_64")
    image = await dirtier_image()
    text = qemu_lab_toml(
        hosts_toml=hosts_toml if hosts_toml is not None else local_hosts_toml(),
        tgtd=tgtd,
        image=image,
        run_dir=run_dir,
        migration_port=free_port(),
        **options,
    )
    return parse_lab(text)


async def booted(driver: QemuDriver, host: str) -> str:
    """Boot the guest on ``host`` and return its ready line."""
    log = Path(driver.files(host).log)
    offset = console_offset(log)  # the console is appended to: wait for this boot's line
    result = await driver.create(host)
    assert result.changed and not result.dry_run
    return await wait_for_console(log, READY_MARKER, timeout=NO_DEADLINE, offset=offset)


async def check_migrated(
    driver: QemuDriver, events: Events, source: str, dest: str
) -> MigrationFinished:
    """The guest runs on ``dest`` only, the events say so, the source QEMU is gone."""
    assert await driver.domains(dest) == [DomainInfo("guest", "running", 128, 1)]
    assert await driver.domains(source) == []
    assert qemu_pids(driver.files(source).qmp) == []
    [finished] = [e for e in events.of(MigrationFinished) if e.source == source]
    assert finished.ok and finished.dest == dest and finished.error is None
    assert finished.guest_host == dest
    # QEMU's own figures: the stop-and-copy pause is part of the whole migration.
    assert finished.downtime_ms is not None and finished.total_time_ms is not None
    assert 0 <= finished.downtime_ms < finished.total_time_ms
    print(
        f"\n{source} -> {dest}: total-time {finished.total_time_ms} ms, downtime "
        f"{finished.downtime_ms} ms, {finished.transferred_bytes / 1e6:.1f} MB in "
        f"{finished.iterations} passes, {finished.wall_time_ms:.0f} ms here"
    )
    states = [(e.host, e.domain, e.state) for e in events.of(DomainState)]
    assert (dest, "guest--incoming", "paused") in states  # the destination while it waits
    assert states.index((source, "guest", "absent")) > states.index((dest, "guest", "running"))
    return finished


async def test_boot_migrate_and_cancel_between_local_hosts(tgtd: Tgtd, run_dir: Path) -> None:
    lab = await qemu_lab(tgtd, run_dir, bandwidth_mbit=400)
    events = Events()
    runners: dict[str, HostRunner] = {h: LocalRunner(h, events.append) for h in ("h1", "h2")}
    driver = hypervisor_driver(lab, runners, events.append)
    assert isinstance(driver, QemuDriver)
    try:
        plan = await driver.create("h1", dry_run=True)
        assert plan.dry_run and not qemu_pids(run_dir)
        [start] = plan.commands
        assert start.host == "h1" and start.argv == tuple(driver.guest_argv("h1"))
        assert f"file=iscsi://127.0.0.1:{tgtd.port}/{IQN}/1,format=raw,if=virtio,cache=none" in (
            start.argv
        )
        ready = await booted(driver, "h1")
        assert ready.endswith("disks=vda"), ready  # the LUN is the guest's disk
        assert "I_T nexus" in tgtd.show()  # QEMU is logged in to the target
        assert await driver.domains("h1") == [DomainInfo("guest", "running", 128, 1)]
        assert await driver.domains("h2") == []
        info = await driver.info("h1")
        assert re.fullmatch(r"QEMU \d+\.\d+\.\d+", info.hypervisor_version or ""), info
        assert info.total_memory_mb and 0 < (info.free_memory_mb or 0) <= info.total_memory_mb
        assert not (await driver.create("h1")).changed  # it runs there already
        with pytest.raises(Refused, match="two copies"):
            await driver.create("h2")

        before = await next_heartbeat(Path(driver.files("h1").log), 0)
        outcome = await driver.migrate("h1", "h2")
        assert outcome.ok, outcome.error
        finished = await check_migrated(driver, events, "h1", "h2")
        assert finished.downtime_ms == outcome.downtime_ms
        assert finished.total_time_ms == outcome.total_time_ms
        progress = [p for p in events.of(MigrationProgress) if p.source == "h1"]
        moved = [p.transferred_bytes for p in progress if p.transferred_bytes]
        assert len(moved) >= 2 and moved == sorted(moved), moved
        assert all(p.total_bytes and p.total_bytes >= 128 << 20 for p in progress if p.iteration)
        # The same guest, its clock carried on: no boot on the destination.
        dest_log = Path(driver.files("h2").log)
        assert await next_heartbeat(dest_log, before) > before
        assert "Linux version" not in dest_log.read_text(errors="replace")

        # Back to h1 at 8 Mbit/s, cancelled while the first pass still copies memory.
        slow = QemuDriver(with_hypervisor(lab, migrate_bandwidth_mbit=8), runners, events.append)
        migration = asyncio.create_task(slow.migrate("h2", "h1"))
        await until(
            lambda: (
                migration.done()
                or any(
                    p.transferred_bytes for p in events.of(MigrationProgress) if p.source == "h2"
                )
            )
        )
        assert not migration.done(), migration.result()
        assert qemu_pids(slow.files("h1").qmp)  # the destination QEMU waits
        await slow.cancel("h2")
        cancelled = await asyncio.wait_for(migration, 30)
        assert not cancelled.ok and "cancelled" in (cancelled.error or ""), cancelled
        assert await slow.domains("h2") == [DomainInfo("guest", "running", 128, 1)]
        assert await slow.domains("h1") == [] and not qemu_pids(slow.files("h1").qmp)
        # h1's destination QEMU opened h1's console log again: the boot's lines are kept.
        assert ready in Path(slow.files("h1").log).read_text(errors="replace")
        last = events.of(MigrationFinished)[-1]
        assert (last.source, last.ok, last.guest_host) == ("h2", False, "h2")
        now = max(uptimes(dest_log))
        assert await next_heartbeat(dest_log, now) > now  # still running after the cancel

        gone = await driver.destroy("h2")
        assert gone.changed and gone.commands == [
            HostCommand("h2", ("qmp", driver.files("h2").qmp, "quit"))
        ]
        assert qemu_pids(run_dir) == []
        assert await driver.domains("h2") == []
    finally:
        for runner in runners.values():
            await runner.close()


async def test_migrate_between_ssh_hosts(sshd: Sshd, tgtd: Tgtd, run_dir: Path) -> None:
    hosts_toml = sshd.host_toml("h1") + "\n" + sshd.host_toml("h2")
    lab = await qemu_lab(tgtd, run_dir, hosts_toml=hosts_toml, bandwidth_mbit=400)
    events = Events()
    hosts = Hosts(lab, events.append)
    try:
        assert await hosts.open(["h1", "h2"]) == {"h1": None, "h2": None}
        runners = {name: hosts[name] for name in ("h1", "h2")}
        assert all(isinstance(r, SshHost) for r in runners.values())
        driver = QemuDriver(lab, runners, events.append, powerdown_timeout_s=1)
        await booted(driver, "h1")
        before = await next_heartbeat(Path(driver.files("h1").log), 0)
        outcome = await driver.migrate("h1", "h2")
        assert outcome.ok, outcome.error
        await check_migrated(driver, events, "h1", "h2")
        assert await next_heartbeat(Path(driver.files("h2").log), before) > before

        # The busybox guest has no acpid: the power button is ignored, then QEMU quits.
        off = await driver.shutdown("h2")
        qmp = driver.files("h2").qmp
        assert off.commands == [
            HostCommand("h2", ("qmp", qmp, "system_powerdown")),
            HostCommand("h2", ("qmp", qmp, "quit")),
        ]
        assert events.notes("ignored the ACPI power button")
        assert await driver.domains("h2") == [] and qemu_pids(run_dir) == []
        assert not (await driver.shutdown("h2")).changed
    finally:
        await hosts.close()


async def test_convergence_policies_with_a_dirtying_guest(tgtd: Tgtd, run_dir: Path) -> None:
    """A guest rewriting 16 MiB of RAM with non-zero bytes against a 32 MB/s link never
    converges at QEMU's 300 ms downtime limit: raise-downtime gets it across; with
    auto-converge QEMU throttles its vCPUs once the policy releases the throttle (run to
    the end, that took ~26 s and a 99 % throttle here: the test cancels it instead)."""
    lab = await qemu_lab(
        tgtd,
        run_dir,
        memory_mb=160,
        bandwidth_mbit=256,
        append="miglab.heartbeat=1 miglabtest.dirty_mib=16",
        convergence="raise-downtime",
        after_syncs=2,
    )
    events = Events()
    runners: dict[str, HostRunner] = {h: LocalRunner(h, events.append) for h in ("h1", "h2")}
    driver = QemuDriver(lab, runners, events.append)
    try:
        await booted(driver, "h1")
        await wait_for_console(
            Path(driver.files("h1").log), "MIGLAB-TEST-DIRTIER", timeout=NO_DEADLINE
        )
        outcome = await driver.migrate("h1", "h2")
        raised = events.notes("raise-downtime")
        print(f"\nraise-downtime: {outcome}\n  " + "\n  ".join(raised))
        assert outcome.ok, outcome.error
        assert raised, events.notes("")
        # The policy acts once dirty-sync-count > 2; a poll may see a later count first.
        first = re.search(
            r"after (\d+) passes over memory; downtime-limit 300 -> 600 ms$", raised[0]
        )
        assert first and int(first.group(1)) >= 2, raised
        assert (outcome.iterations or 0) > 3
        assert await driver.domains("h2") == [DomainInfo("guest", "running", 160, 1)]

        auto = QemuDriver(with_hypervisor(lab, convergence="auto-converge"), runners, events.append)

        def throttle() -> list[int]:
            return [
                p.cpu_throttle_percentage or 0
                for p in events.of(MigrationProgress)
                if p.source == "h2"
            ]

        migration = asyncio.create_task(auto.migrate("h2", "h1"))
        await until(lambda: max(throttle(), default=0) >= 30 or migration.done())
        assert not migration.done(), migration.result()
        released = events.notes("auto-converge")
        print(f"auto-converge: {released}\n  throttle {sorted(set(throttle()))}")
        assert len(released) == 1, released
        after = re.search(r"after (\d+) passes over memory; vCPU throttle released", released[0])
        assert after and int(after.group(1)) >= 2, released
        # Held at 1 % (or off) until the policy acted; then QEMU's own steps of 10 %.
        steps = sorted({t for t in throttle() if t > 1})
        assert len(steps) >= 2, steps
        assert all((b - a) % 10 == 0 for a, b in itertools.pairwise(steps)), steps
        await auto.cancel("h2")
        cancelled = await asyncio.wait_for(migration, 30)
        assert not cancelled.ok and "cancelled" in (cancelled.error or "")
        assert await auto.domains("h2") == [DomainInfo("guest", "running", 160, 1)]
        assert await auto.domains("h1") == [] and not qemu_pids(auto.files("h1").qmp)
        await auto.destroy("h2")
        assert qemu_pids(run_dir) == []
    finally:
        for runner in runners.values():
            await runner.close()


async def test_a_source_qemu_that_dies_mid_migration_is_named_with_its_console(
    tgtd: Tgtd, run_dir: Path
) -> None:
    """The source's QEMU killed while it migrates: the migration fails saying which QEMU
    went and what its guest's console said last (a guest panic ends QEMU the same way:
    -no-reboot), the destination is cleaned up, and nothing is left running."""
    lab = await qemu_lab(
        tgtd,
        run_dir,
        memory_mb=160,
        bandwidth_mbit=64,  # 8 MB/s against 16 MiB rewritten all the time: it never ends
        append="miglab.heartbeat=1 miglabtest.dirty_mib=16",
    )
    events = Events()
    runners: dict[str, HostRunner] = {h: LocalRunner(h, events.append) for h in ("h1", "h2")}
    driver = QemuDriver(lab, runners, events.append)
    try:
        await booted(driver, "h1")
        await wait_for_console(
            Path(driver.files("h1").log), "MIGLAB-TEST-DIRTIER", timeout=NO_DEADLINE
        )
        (source_pid,) = qemu_pids(driver.files("h1").qmp)
        migration = asyncio.create_task(driver.migrate("h1", "h2"))
        await until(lambda: events.of(MigrationProgress) or migration.done())
        assert not migration.done(), migration.result()
        os.kill(source_pid, signal.SIGKILL)
        outcome = await asyncio.wait_for(migration, 120)
        assert not outcome.ok
        error = outcome.error or ""
        assert "QMP connection" in error, error
        assert f"the QEMU of guest on h1 (pid {source_pid}) is gone" in error, error
        console = Path(driver.files("h1").log).read_text(errors="replace").splitlines()
        last = [line.strip() for line in console if line.strip()][-1]
        assert "its console ended: " in error and last in error, (last, error)
        (finished,) = events.of(MigrationFinished)
        assert not finished.ok and finished.error == error
        assert await driver.domains("h2") == [] and qemu_pids(run_dir) == []
    finally:
        for runner in runners.values():
            await runner.close()


async def test_plans_list_the_exact_commands(tmp_path: Path) -> None:
    """Dry runs and the migration plan, with no QEMU running (nothing is started)."""
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    text = f"""\
[lab]
name = "plan"
link_mbit = 100
[hosts.h1]
address = "local"
[hosts.h2]
address = "local"
[storage]
host = "h1"
driver = "tgt"
iqn = "{IQN}"
device = "/srv/disk.img"
portal = "198.18.0.1:3260"
[hypervisor]
driver = "qemu"
hosts = ["h1", "h2"]
downtime_limit_ms = 500
run_dir = "{tmp_path}/run"
convergence = "auto-converge"
[guest]
name = "guest"
address = "198.18.0.50"
vcpus = 2
memory_mb = 256
[guest.qemu]
kernel = "{kernel}"
initrd = "{initrd}"
append = "miglab.ip=198.18.0.50/15"
accel = "kvm"
migration_port = 4555
"""
    events = Events()
    runners: dict[str, HostRunner] = {h: LocalRunner(h, events.append) for h in ("h1", "h2")}
    driver = QemuDriver(parse_lab(text), runners, events.append)
    run = f"{tmp_path}/run"
    argv = driver.guest_argv("h1")
    assert argv[:2] == ["qemu-system-x86_64", "-name"] and argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-m") + 1] == "256" and argv[argv.index("-smp") + 1] == "2"
    assert argv[argv.index("-kernel") + 1] == str(kernel)
    assert argv[argv.index("-initrd") + 1] == str(initrd)
    assert "miglab.ip=198.18.0.50/15" in argv[argv.index("-append") + 1].split()
    # The console is appended to, so a migration back to h1 keeps what the guest printed.
    assert f"file,id=console0,path={run}/guest.h1.log,append=on" in argv
    assert argv[argv.index("-serial") + 1] == "chardev:console0" and f"{run}/guest.h1.pid" in argv
    assert f"unix:{run}/guest.h1.qmp,server=on,wait=off" in argv
    assert f"file=iscsi://198.18.0.1:3260/{IQN}/1,format=raw,if=virtio,cache=none" in argv
    assert argv[-1] == "-daemonize" and "-incoming" not in argv
    lab = parse_lab(text)
    assert lab.guest.qemu is not None
    no_initrd = lab.guest.model_copy(
        update={"qemu": lab.guest.qemu.model_copy(update={"initrd": None})}
    )
    bare = QemuDriver(lab.model_copy(update={"guest": no_initrd}), runners, events.append)
    assert "-initrd" not in bare.guest_argv("h1") and "-kernel" in bare.guest_argv("h1")
    comma = QemuDriver(with_hypervisor(lab, run_dir="/run/a,b"), runners, events.append)
    with pytest.raises(DriverError, match="must not contain a comma"):
        comma.guest_argv("h1")

    created = await driver.create("h2", dry_run=True)
    assert created.commands == [
        HostCommand("h2", ("mkdir", "-p", run)),
        HostCommand("h2", tuple(driver.guest_argv("h2"))),
    ]
    assert not Path(run).exists()  # a dry run changes nothing
    assert not (await driver.destroy("h1", dry_run=True)).changed  # nothing to destroy

    def qmp(host: str, command: str, args: dict[str, Any] | None = None) -> HostCommand:
        extra = (json.dumps(args, sort_keys=True),) if args else ()
        return HostCommand(host, ("qmp", f"{run}/guest.{host}.qmp", command, *extra))

    caps = {"capabilities": [{"capability": "auto-converge", "state": True}]}
    params = {
        "max-bandwidth": 12_500_000,  # lab.link_mbit = 100
        "downtime-limit": 500,
        "cpu-throttle-initial": 1,
        "cpu-throttle-increment": 1,
        "max-cpu-throttle": 1,
    }
    incoming = driver.guest_argv("h2", incoming="tcp:127.0.0.1:4555")
    at = incoming.index("-incoming")
    assert incoming[:at] + incoming[at + 2 :] == driver.guest_argv("h2")  # the same guest
    assert await driver.migrate_plan("h1", "h2") == [
        HostCommand("h2", ("mkdir", "-p", run)),
        HostCommand("h2", tuple(incoming)),
        qmp("h1", "migrate-set-capabilities", caps),
        qmp("h1", "migrate-set-parameters", params),
        qmp("h1", "migrate", {"uri": "tcp:127.0.0.1:4555"}),
        qmp("h1", "query-migrate"),
        qmp("h1", "quit"),
    ]
    with pytest.raises(Refused, match="itself"):
        await driver.migrate_plan("h1", "h1")
    with pytest.raises(Refused, match="not running on h1"):
        await driver.migrate("h1", "h2")


def test_convergence_policy_steps() -> None:
    """What each policy asks of QEMU, pass by pass (no QEMU needed)."""

    def status(syncs: int, state: str = "active") -> MigrationStatus:
        return MigrationStatus.model_validate({"status": state, "ram": {"dirty-sync-count": syncs}})

    set_params = "migrate-set-parameters"
    raising = ConvergencePolicy("raise-downtime", 2, 300)
    assert raising.capabilities() == {"auto-converge": False}
    assert raising.parameters() == {"downtime-limit": 300}
    assert raising.step(status(2)) == ([], None)  # two passes may not converge yet
    requests, note = raising.step(status(3))
    assert requests == [(set_params, {"downtime-limit": 600})]
    assert (
        note
        == "raise-downtime: not converged after 2 passes over memory; downtime-limit 300 -> 600 ms"
    )
    assert raising.step(status(3)) == ([], None)  # once per pass
    requests, _ = raising.step(status(6))  # passes between two polls count as one step
    assert requests == [(set_params, {"downtime-limit": 1200})]
    assert raising.step(status(9, "completed")) == ([], None)
    capped = ConvergencePolicy("raise-downtime", 1, 1_500_000)
    assert capped.step(status(2))[0] == [(set_params, {"downtime-limit": 2_000_000})]
    assert capped.step(status(3)) == ([], None)  # QEMU's maximum: 2000 s

    auto = ConvergencePolicy("auto-converge", 2, 300)
    assert auto.capabilities() == {"auto-converge": True}
    assert auto.parameters() == {
        "downtime-limit": 300,
        "cpu-throttle-initial": 1,
        "cpu-throttle-increment": 1,
        "max-cpu-throttle": 1,
    }
    assert auto.step(status(2)) == ([], None)
    requests, note = auto.step(status(3))
    assert requests == [
        (
            set_params,
            {"cpu-throttle-initial": 20, "cpu-throttle-increment": 10, "max-cpu-throttle": 99},
        )
    ]
    assert note and note.startswith("auto-converge: not converged after 2 passes over memory")
    assert auto.step(status(4)) == ([], None)  # released once; QEMU raises it from there

    nothing = ConvergencePolicy("none", 2, 300)
    assert nothing.capabilities() == {"auto-converge": False}
    requests, note = nothing.step(status(3))
    assert requests == [] and note and "convergence policy is none" in note
    assert nothing.step(status(4)) == ([], None)
