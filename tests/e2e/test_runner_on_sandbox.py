"""The experiment runner on the sandbox lab: real QEMU, real ping, real sysbench, quick timelines.

`miglab run` as a user runs it (a separate process, `--quick`), and a run cancelled in
the middle of its migration, in-process, as the console cancels it. The tests run in
file order; the guest stays where each run leaves it (the runner boots it when it runs
nowhere), and the module leaves no guest behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.events import Event, ExperimentFinished, MigrationFinished, MigrationProgress
from backend.experiments.report import build_report, report_json
from backend.experiments.scenarios import parse_scenario
from backend.lab import LabController
from backend.lab_session import LabSession
from backend.session import read_session
from backend.transport.base import HostRunner, TransportError
from backend.transport.hosts import Hosts
from tests.e2e.conftest import SandboxUnderTest, miglab
from tests.e2e.test_lab_on_sandbox import destroy_guest, processes_in

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

HOSTS = ("storage", "host1", "host2")
# What the runner starts on a host or in the guest, as it shows in a command line.
STARTED = re.compile(r"(^|[\s/])(ping|sysbench|dd)\s|miglab-dirtier")


@pytest.fixture(scope="module", autouse=True)
def no_guest_after_the_module(sandbox: SandboxUnderTest) -> Iterator[None]:
    yield
    asyncio.run(destroy_guest(sandbox))


def run_cli(sandbox: SandboxUnderTest, scenario: str, log: Path) -> dict[str, Any]:
    """`miglab run SCENARIO --quick`, then `miglab report --format json` of its log."""
    lab = str(sandbox.lab_file)
    ran = miglab("run", scenario, "--lab", lab, "--quick", "--log", str(log), timeout=240)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    print(f"\n{ran.stdout[-2500:]}")
    reported = miglab("report", str(log), "--format", "json")
    assert reported.returncode == 0, reported.stderr
    data: dict[str, Any] = json.loads(reported.stdout)
    assert data["scenario"] == scenario and data["lab"] == "sandbox"
    assert not data["cut_short"] and not data["simulated"]
    return data


def test_migrate_ping_on_the_cli(sandbox: SandboxUnderTest, tmp_path: Path) -> None:
    data = run_cli(sandbox, "migrate-ping", tmp_path / "migrate-ping.jsonl")
    [migration] = data["migrations"]
    assert {migration["from"], migration["to"]} == {"host1", "host2"}
    assert migration["total_s"] is not None and migration["total_s"] > 0
    assert migration["downtime_ms"] is not None and migration["downtime_ms"] >= 0
    assert migration["downtime_ms"] < migration["total_s"] * 1000
    assert migration["unreachable_s"] is not None and migration["unreachable_s"] >= 0
    rtt = data["probes"]["ping.rtt_ms"]
    assert rtt["unit"] == "ms" and rtt["baseline"] is not None and rtt["after"] is not None


def test_migrate_sysbench_cpu_on_the_cli(sandbox: SandboxUnderTest, tmp_path: Path) -> None:
    data = run_cli(sandbox, "migrate-sysbench-cpu", tmp_path / "migrate-sysbench-cpu.jsonl")
    [migration] = data["migrations"]
    assert migration["total_s"] is not None and migration["downtime_ms"] is not None
    cpu = data["probes"]["sysbench-cpu.eps"]
    assert cpu["unit"] == "events/s"
    for part in ("baseline", "during", "after"):
        assert cpu[part] is not None and cpu[part] > 0, (part, cpu)
    assert cpu["during_change_pct"] is not None


# -- an interrupted run ---------------------------------------------------------------------

# A probe on the storage host and two workloads in the guest, the dirtier among them.
INTERRUPTED = """
id = "e2e-interrupted"
title = "ping, sysbench cpu and the RAM dirtier, cancelled mid-migration"
migrations = 1

[timeline]
baseline_s = 3
after_s = 3

[[workloads]]
kind = "sysbench-cpu"
options = { threads = 2 }

[[workloads]]
kind = "dirtier"
options = { size_mib = 32 }

[[probes]]
kind = "ping"
where = "storage"
options = { interval_s = 0.05 }
"""


async def started_processes(sandbox: SandboxUnderTest, guest: HostRunner) -> dict[str, list[str]]:
    """What the runner starts, still running: per host namespace, and in the guest (`ps`)."""
    found: dict[str, list[str]] = {}
    for host in HOSTS:
        procs = await processes_in(sandbox, host)
        lines = [" ".join(argv) + " " for argv in procs.values()]
        found[host] = [line for line in lines if STARTED.search(line)]
    ps = await guest.run(["ps"])
    assert ps.ok, ps.stderr
    found["guest"] = [line for line in ps.stdout.splitlines() if STARTED.search(line + " ")]
    return found


async def open_guest(hosts: Hosts) -> HostRunner:
    """SSH into the guest once it lets us (no deadline: a hang is the test's timeout)."""
    while True:
        try:
            return await hosts.open_guest()
        except TransportError:
            await asyncio.sleep(1.0)


@pytest.fixture
async def lab_session(sandbox: SandboxUnderTest, tmp_path: Path) -> AsyncIterator[LabSession]:
    session = LabSession(sandbox.lab, log=tmp_path / "interrupted.jsonl")
    try:
        yield session
    finally:
        await session.close()


async def test_an_interrupted_run_stops_everything_and_its_log_reports(
    sandbox: SandboxUnderTest, lab_session: LabSession, tmp_path: Path
) -> None:
    hosts, bus = lab_session.hosts, lab_session.bus
    events: list[Event] = []
    bus.subscribe(events.append)
    migrating = asyncio.Event()

    def watch(event: Event) -> None:
        if isinstance(event, MigrationProgress) and (event.transferred_bytes or 0) > 1_000_000:
            migrating.set()

    bus.subscribe(watch)
    log = tmp_path / "interrupted.jsonl"
    assert lab_session.log_path == log
    scenario = parse_scenario(INTERRUPTED)
    runner = lab_session.experiment(scenario, records=True)
    run = asyncio.ensure_future(runner.run())
    checker = Hosts(sandbox.lab, lambda _: None)  # the test's own view, not in the log
    guest: HostRunner | None = None
    try:
        seen = asyncio.ensure_future(migrating.wait())
        await asyncio.wait({run, seen}, return_when=asyncio.FIRST_COMPLETED)
        seen.cancel()
        assert migrating.is_set() and not run.done(), "the run did not get to its migration"
        guest = await open_guest(checker)
        running = await started_processes(sandbox, guest)
        # The check can fail: everything is there while the run goes on.
        assert any("ping" in line for line in running["storage"]), running
        assert any("sysbench" in line for line in running["guest"]), running
        assert any("miglab-dirtier" in line for line in running["guest"]), running
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert runner.result is not None and runner.result.status == "interrupted"

        left = await started_processes(sandbox, guest)
        assert left == {place: [] for place in (*HOSTS, "guest")}, left
        shm = await guest.run(["ls", "-A", "/dev/shm"])
        assert shm.ok and "miglab-dirty" not in shm.stdout, shm.stdout  # its trap removed it
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(BaseException):
                await run
        if guest is not None:
            await guest.close()
        await checker.close()

    # The cancelled migration left the guest on one host, as the log's note says.
    placement = await LabController(sandbox.lab, hosts, bus.publish).where()
    assert len(placement.running_on) == 1 and not placement.unreachable, placement

    session = await asyncio.to_thread(read_session, log)
    assert session.bad_lines == [] and not session.cut_short
    report = build_report(session)
    assert report.end_status == "interrupted"
    [finished] = [e for e in session.events if isinstance(e, ExperimentFinished)]
    assert finished.status == "interrupted"
    [migration] = report.analysis.migrations
    assert migration.ok is False and migration.error, migration
    logged = [e for e in session.events if isinstance(e, MigrationFinished)]
    assert len(logged) == 1 and not logged[0].ok
    data = report_json(report)
    assert data["cut_short"] is False and len(data["migrations"]) == 1
    # Each probe and workload recorded readings up to the cancel.
    assert {"ping.rtt_ms", "sysbench-cpu.eps", "dirtier.mib_per_s"} <= set(data["probes"])
    print(f"\ninterrupted run: {migration.error}; guest on {placement.running_on}")
