"""LabController on the sandbox lab: real tgtd, real QEMU, real SSH, real ping, end to end.

The console's own path: ``Hosts`` opened on the sandbox's lab.toml (SSH from the root
namespace into each host's namespace), a :class:`LabController` on them, every event on
one bus with a session log subscribed. The tests run in file order and each starts from
a state it sets up itself (:func:`guest_on`); the module leaves no guest behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from backend.config import LabConfig
from backend.drivers.base import DriverError, Refused
from backend.drivers.hv_qemu import QemuDriver
from backend.events import (
    CommandStarted,
    Event,
    EventBus,
    HostState,
    InitiatorSession,
    MigrationFinished,
    MigrationProgress,
    Note,
    Sample,
    StorageExported,
)
from backend.experiments.report import build_report
from backend.lab import LabController
from backend.probes import is_summary
from backend.probes.ping import PingParser, ping_command, unreachable_gaps
from backend.probes.sysbench import SysbenchParser, sysbench_cpu_command
from backend.sandbox.processes import ProcessRecord, spawn
from backend.sandbox.services import wait_for_ssh
from backend.sandbox.state import load_state, save_state
from backend.session import SessionLogWriter, make_header, read_session
from backend.transport.base import CommandFailed, HostRunner, TransportError
from backend.transport.hosts import Hosts
from backend.transport.local import LocalRunner
from tests.e2e.conftest import SandboxUnderTest

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

HV_HOSTS = ("host1", "host2")


# -- the console: hosts, controller, bus, session log ---------------------------------------


@dataclass
class Console:
    sandbox: SandboxUnderTest
    lab: LabConfig
    bus: EventBus
    hosts: Hosts
    controller: LabController
    log: Path
    writer: SessionLogWriter
    events: list[Event] = field(default_factory=list)

    @property
    def driver(self) -> QemuDriver:
        driver = self.controller.hypervisor
        assert isinstance(driver, QemuDriver)
        return driver

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def note(self, text: str) -> None:
        self.bus.publish(Note(text=text))


async def open_console(sandbox: SandboxUnderTest, log: Path) -> Console:
    lab = sandbox.lab
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    header = make_header(
        lab=lab.model_dump(mode="json"), lab_file=lab.source_file, lab_sha256=lab.digest
    )
    writer = await SessionLogWriter.create(log, header, bus)
    hosts = Hosts(lab, bus.publish)
    opened = await hosts.open()
    assert opened == {"storage": None, "host1": None, "host2": None}, opened
    controller = LabController(lab, hosts, bus.publish)
    return Console(sandbox, lab, bus, hosts, controller, log, writer, events)


async def close_console(console: Console) -> None:
    await console.hosts.close()
    await console.writer.close()


@pytest.fixture
async def console(sandbox: SandboxUnderTest, tmp_path: Path) -> AsyncIterator[Console]:
    opened = await open_console(sandbox, tmp_path / "session.jsonl")
    try:
        yield opened
    finally:
        await close_console(opened)


@pytest.fixture(scope="module", autouse=True)
def no_guest_after_the_module(sandbox: SandboxUnderTest) -> Iterator[None]:
    """The next module (and test_sandbox.py) starts with no guest on either host."""
    yield
    asyncio.run(destroy_guest(sandbox))


async def destroy_guest(sandbox: SandboxUnderTest) -> None:
    """Stop every QEMU of the guest, through the driver, on fresh connections."""
    bus = EventBus()
    hosts = Hosts(sandbox.lab, bus.publish)
    try:
        await hosts.open()
        driver = LabController(sandbox.lab, hosts, bus.publish).hypervisor
        for host in HV_HOSTS:
            await driver.destroy(host)
    finally:
        await hosts.close()
    for host in HV_HOSTS:
        assert await qemu_in(sandbox, host) == [], host


# -- processes in a host's namespace ---------------------------------------------------------


async def run_local(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (argv, err.decode())
    return out.decode()


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None  # gone meanwhile
    return raw.decode(errors="replace").rstrip("\0").split("\0") if raw else None


async def processes_in(sandbox: SandboxUnderTest, host: str) -> dict[int, list[str]]:
    """Every process whose network namespace is ``host``'s, with its command line."""
    pids = [int(p) for p in (await run_local("ip", "netns", "pids", sandbox.netns(host))).split()]
    found = {pid: await asyncio.to_thread(_cmdline, pid) for pid in pids}
    return {pid: argv for pid, argv in found.items() if argv}  # kernel threads: no cmdline


async def qemu_in(sandbox: SandboxUnderTest, host: str) -> list[int]:
    procs = await processes_in(sandbox, host)
    return [pid for pid, argv in procs.items() if "qemu-system" in Path(argv[0]).name]


# -- the guest -------------------------------------------------------------------------------


async def ping_once(console: Console) -> bool:
    argv = ping_command(console.lab.guest.address, count=1, reply_timeout_s=1)
    return (await console.hosts["storage"].run(argv, timeout=10)).ok


async def wait_until_answers(console: Console) -> None:
    """Until the guest answers ping after its boot (an emulated boot on a loaded machine
    takes what it takes; a hang is the test's timeout)."""
    while not await ping_once(console):
        await asyncio.sleep(0.5)


async def guest_on(console: Console, host: str) -> None:
    """The guest runs on ``host`` and nowhere else (booted afresh if it is not so)."""
    placement = await console.controller.where()
    if placement.running_on == [host]:
        return
    for each in HV_HOSTS:
        await console.driver.destroy(each)
    booted = await console.controller.boot(host)
    assert booted.changed and [c.host for c in booted.commands][-1] == host, booted
    await wait_until_answers(console)


async def open_guest(console: Console) -> HostRunner:
    """SSH into the guest (dropbear starts just after its network), once it lets us."""
    while True:
        try:
            return await console.hosts.open_guest()
        except TransportError:
            await asyncio.sleep(1.0)


class StoragePing:
    """ping run ON the storage host through its runner, as the experiment runner does:
    a long-running command, its lines through the ping parser, the samples on the bus."""

    def __init__(self, console: Console, *, interval_s: float) -> None:
        self.console = console
        self.parser = PingParser("storage")
        self.samples: list[Sample] = []
        argv = ping_command(console.lab.guest.address, interval_s=interval_s, duration_s=600)
        self.task = asyncio.ensure_future(
            console.hosts["storage"].run(
                argv, timeout=None, on_line=self._line, long_running=True, log_output=False
            )
        )

    def _publish(self, samples: list[Sample]) -> None:
        self.samples += samples
        for sample in samples:
            self.console.bus.publish(sample)

    def _line(self, stream: str, line: str) -> None:
        if stream == "stdout":
            self._publish(self.parser.feed(line))

    def replies(self) -> list[Sample]:
        return [s for s in self.samples if s.values.get("rtt_ms") is not None]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self._publish(self.parser.finish())


# -- 1. storage --------------------------------------------------------------------------------


async def test_prepare_exports_the_disk_both_hosts_see_it_and_twice_changes_nothing(
    console: Console,
) -> None:
    controller, storage = console.controller, console.lab.storage
    assert (await controller.where()).running_on == []
    # `sandbox up` exported the disk already: take that away so prepare has work to do.
    await controller.target.unexport(force=True)
    try:
        assert all(t.iqn != storage.iqn for t in (await controller.target.status()).targets)
        # The target's dry run (prepare's own cannot run here: its logins look for the
        # target that only the real export makes).
        plan = await controller.target.export(dry_run=True)
        assert plan.changed and plan.dry_run
        assert all(t.iqn != storage.iqn for t in (await controller.target.status()).targets)

        done = await controller.prepare()
        assert done.changed and not done.dry_run
        assert done.commands == plan.commands  # the dry run showed exactly what ran
        shown = [" ".join(c.argv) for c in done.commands]
        assert all(c.host == "storage" for c in done.commands), shown
        assert any("--mode target" in s and f"-T {storage.iqn}" in s for s in shown), shown
        assert any("--mode logicalunit" in s and storage.device in s for s in shown), shown
        assert any("--op bind" in s and "-I ALL" in s for s in shown), shown
        [exported] = console.of(StorageExported)
        assert exported.changed and exported.iqn == storage.iqn

        # Both hosts see the LUN: the driver's look, and libiscsi's own listing from each.
        for host in HV_HOSTS:
            [session] = await controller.initiator.sessions(host)
            assert session.iqn == storage.iqn
            listing = await console.hosts[host].run(
                ["iscsi-ls", "-s", f"iscsi://{storage.portal}/"]
            )
            assert listing.ok, listing.stderr
            assert f"Target:{storage.iqn} Portal:{storage.portal}" in listing.stdout
            assert re.search(rf"Lun:{storage.lun}\s+Type:DIRECT_ACCESS", listing.stdout)
        logged_in = {e.host for e in console.of(InitiatorSession) if e.state == "logged-in"}
        assert logged_in == set(HV_HOSTS)

        again = await controller.prepare()
        assert not again.changed and again.commands == []
        assert [e.changed for e in console.of(StorageExported)] == [True, False]
    finally:
        await controller.target.export()  # the lab as `sandbox up` left it, whatever happened


# -- 2. boot, ping, a benchmark in the guest ------------------------------------------------------


async def test_boot_ping_from_storage_and_sysbench_in_the_guest(console: Console) -> None:
    await guest_on(console, "host1")
    placement = await console.controller.where()
    assert placement.running_on == ["host1"] and not placement.unreachable

    ping = StoragePing(console, interval_s=0.2)
    while len(ping.replies()) < 5:
        assert not ping.task.done(), ping.task.result()
        await asyncio.sleep(0.1)
    await ping.stop()
    replies = ping.replies()
    assert [s.values["seq"] for s in replies[:5]] == [1, 2, 3, 4, 5]
    assert all(0 < (s.values["rtt_ms"] or 0) < 1000 for s in replies)
    assert unreachable_gaps(ping.samples) == []

    guest = await open_guest(console)
    try:
        parser = SysbenchParser(console.lab.guest.name, probe="sysbench-cpu")
        samples: list[Sample] = []

        def on_line(stream: str, line: str) -> None:
            if stream == "stdout":
                samples.extend(parser.feed(line))

        argv = sysbench_cpu_command(threads=1, time_s=3, report_interval_s=1)
        result = await guest.run(argv, timeout=60, on_line=on_line, long_running=True)
        samples += parser.finish()
    finally:
        await guest.close()
    assert result.ok, result.stderr
    intervals = [s for s in samples if not is_summary(s)]
    [summary] = [s for s in samples if is_summary(s)]
    assert len(intervals) >= 2, result.stdout
    assert all((s.values["eps"] or 0) > 0 for s in intervals)
    assert (summary.values["events_per_s"] or 0) > 0
    assert summary.host == console.lab.guest.name
    print(f"\nsysbench cpu in the guest (TCG): {summary.values['events_per_s']:.1f} events/s")


# -- 3. the safety rule ---------------------------------------------------------------------------


async def test_boot_on_host2_while_the_guest_runs_on_host1_is_refused(console: Console) -> None:
    await guest_on(console, "host1")
    started_before = len(console.of(CommandStarted))
    with pytest.raises(Refused) as refused:
        await console.controller.boot("host2")
    assert "host1" in str(refused.value), refused.value
    assert "already running" in str(refused.value)
    qemu = console.lab.guest.qemu
    assert qemu is not None
    started = console.of(CommandStarted)[started_before:]
    assert not [c for c in started if c.host == "host2" and qemu.binary in c.argv], started
    assert await qemu_in(console.sandbox, "host2") == []
    assert (await console.controller.where()).running_on == ["host1"]


# -- 4. a live migration under a 10 ms ping ----------------------------------------------------


async def until(check: Callable[[], bool], what: str) -> None:
    """Until ``check()`` (``what`` it waits for; no deadline: a hang is the test's timeout)."""
    while not check():
        await asyncio.sleep(0.05)


async def test_migrate_to_host2_under_a_10ms_ping(console: Console) -> None:
    await guest_on(console, "host1")
    ping = StoragePing(console, interval_s=0.01)
    try:
        await until(lambda: len(ping.replies()) >= 50, "replies before the migration")
        outcome = await console.controller.migrate("host2")
        after = len(ping.replies())
        await until(lambda: len(ping.replies()) >= after + 100, "replies after the migration")
    finally:
        await ping.stop()
    assert outcome.ok, outcome.error
    [finished] = console.of(MigrationFinished)
    assert finished.ok and (finished.source, finished.dest) == ("host1", "host2")
    assert outcome.downtime_ms is not None and outcome.total_time_ms is not None
    assert 0 <= outcome.downtime_ms < outcome.total_time_ms

    # The ping's own view: the longest silence around a loss, from the parser's samples.
    gaps = unreachable_gaps(ping.samples)
    assert all(g.start_t is not None for g in gaps), gaps  # it answered before
    # An open gap can only be the ping's own stop, after the guest answered from host2.
    assert all(g.end_t is not None or (g.start_t or 0) > finished.t for g in gaps), gaps
    closed = [g for g in gaps if g.duration_s is not None]
    unreachable = max((g.duration_s or 0.0 for g in closed), default=0.0)
    lost = sum(g.lost_count for g in closed)
    text = (
        f"ping every 10 ms from storage: unreachable for {unreachable:.3f} s ({lost} lost) "
        f"while {console.lab.guest.name} migrated host1 -> host2; QEMU downtime "
        f"{outcome.downtime_ms:g} ms, total-time {outcome.total_time_ms:g} ms"
    )
    console.note(text)
    print(f"\n{text}")
    assert [s for s in ping.replies() if s.t > finished.t], "no reply from the guest on host2"

    # The guest runs on host2 only; host1's QEMU is gone; the guest answers.
    placement = await console.controller.where()
    assert placement.running_on == ["host2"] and not placement.unreachable, placement
    assert await console.driver.domains("host1") == []
    assert await qemu_in(console.sandbox, "host1") == []
    assert len(await qemu_in(console.sandbox, "host2")) == 1
    assert await ping_once(console)

    # The session log holds the progress, QEMU's figures and the measured silence.
    await console.writer.close()
    session = await asyncio.to_thread(read_session, console.log)
    assert session.bad_lines == [] and not session.cut_short
    progress = [e for e in session.events if isinstance(e, MigrationProgress)]
    assert len(progress) >= 3, progress
    assert {(p.source, p.dest) for p in progress} == {("host1", "host2")}
    sent = [p.transferred_bytes or 0 for p in progress]
    assert sent == sorted(sent) and sent[-1] > 0
    [logged] = [e for e in session.events if isinstance(e, MigrationFinished)]
    assert logged.downtime_ms == outcome.downtime_ms
    assert logged.total_time_ms == outcome.total_time_ms
    assert text in [e.text for e in session.events if isinstance(e, Note)]
    # miglab report reads the same silence out of the logged samples.
    [migration] = build_report(session).analysis.migrations
    assert migration.unreachable_s == pytest.approx(unreachable)
    assert migration.downtime_ms == outcome.downtime_ms


# -- 5. the destination's sshd dies mid-migration -----------------------------------------------


async def kill_sshd(sandbox: SandboxUnderTest, host: str) -> list[int]:
    """SIGKILL every sshd in ``host``'s namespace: the listener and each connection's own
    (killing only the listener leaves the open connections up)."""

    def comm(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return ""

    procs = await processes_in(sandbox, host)
    pids = [pid for pid in procs if await asyncio.to_thread(comm, pid) == "sshd"]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


async def restart_sshd(sandbox: SandboxUnderTest, host: str) -> ProcessRecord:
    """Start ``host``'s sshd again as `sandbox up` did (same command line, config and host
    key), and record it in the sandbox's state so that `down` stops it."""
    fd = await asyncio.to_thread(os.open, sandbox.directory / "lock", os.O_RDWR | os.O_CREAT)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)  # as `up` and `down` do
        state = await load_state(sandbox.directory)
        assert state is not None
        [old] = [p for p in state.processes if p.role == f"sshd@{host}"]
        runner = LocalRunner("sandbox", lambda _: None)
        fresh = await spawn(runner, old.role, old.argv, log=Path(old.log))
        state.processes[state.processes.index(old)] = fresh
        await save_state(sandbox.directory, state)
    finally:
        os.close(fd)
    await wait_for_ssh(fresh, sandbox.address(host))
    return fresh


async def test_host2_sshd_killed_mid_migration(console: Console, tmp_path: Path) -> None:
    sandbox = console.sandbox
    await guest_on(console, "host1")
    running = asyncio.Event()

    def watch(event: Event) -> None:
        if isinstance(event, MigrationProgress) and (event.transferred_bytes or 0) > 2_000_000:
            running.set()

    console.bus.subscribe(watch)
    migration = asyncio.ensure_future(console.controller.migrate("host2"))
    error: str | None = None
    try:
        seen = asyncio.ensure_future(running.wait())
        await asyncio.wait({migration, seen}, return_when=asyncio.FIRST_COMPLETED)
        seen.cancel()
        assert running.is_set() and not migration.done(), "the migration never got going"
        killed_at = time.time()
        assert await kill_sshd(sandbox, "host2")
        try:
            outcome = await migration
            assert not outcome.ok, "the migration succeeded with its destination's sshd gone"
            error = outcome.error
        except (CommandFailed, TransportError, DriverError) as exc:
            error = str(exc)
        print(f"\nthe console reported: {error}")
        assert await kill_sshd(sandbox, "host2") == []  # nothing came back by itself
    finally:
        if not migration.done():
            migration.cancel()
            with contextlib.suppress(BaseException):
                await migration
        await restart_sshd(sandbox, "host2")
    assert error is not None and "host2" in error, error
    disconnected = [e for e in console.of(HostState) if e.state == "disconnected"]
    assert [e.host for e in disconnected][:1] == ["host2"], disconnected

    # Looked at afresh (as a console started now would): the guest runs on exactly one host.
    fresh = await open_console(sandbox, tmp_path / "after.jsonl")
    try:
        placement = await fresh.controller.where()
        print(f"after the failure the guest runs on {placement.running_on}")
        assert len(placement.running_on) == 1 and not placement.unreachable, placement
        # Whatever copy the other host keeps (a source left paused), none of it runs.
        other = fresh.controller.other(placement.running_on[0])
        copies = await fresh.driver.domains(other)
        print(f"on {other}: {copies}")
        assert all(copy.state != "running" for copy in copies), copies
        assert await ping_once(fresh)
    finally:
        await close_console(fresh)

    # The log holds everything up to the failure, and reads back whole.
    published = list(console.events)
    await console.writer.close()
    session = await asyncio.to_thread(read_session, console.log)
    assert session.bad_lines == [] and not session.cut_short
    logged = [(e.kind, e.t) for e in session.events]
    assert logged[: len(published)] == [(e.kind, e.t) for e in published]
    before_kill = [
        e for e in session.events if isinstance(e, MigrationProgress) and e.t <= killed_at
    ]
    assert before_kill and (before_kill[-1].transferred_bytes or 0) > 2_000_000
    assert any(
        isinstance(e, HostState) and e.host == "host2" and e.state == "disconnected"
        for e in session.events
    )
