"""The experiment runner end to end on a lab: real sshd, tgtd, ping and sysbench.

The lab is a fixture (``testlab``) with a small interface (:class:`LabUnderTest`), so
the same tests can run on another lab (the sandbox's QEMU lab) by adding a fixture
parameter. Here it is :class:`tests.support.loopback_lab.LoopbackLab`: the guest is an
sshd on 127.0.0.1, xl is the fake of ``tests/support/fake_tools`` on two more sshds.

Timelines are a few seconds (a scenario's timeline replaced, its probes kept).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from backend.config import LabConfig, parse_lab
from backend.events import (
    Event,
    ExperimentFinished,
    ExperimentStarted,
    MigrationFinished,
    MigrationProgress,
    Note,
    Phase,
    RepetitionStarted,
    Sample,
)
from backend.experiments.headless import HeadlessPrinter
from backend.experiments.report import build_report, render_json
from backend.experiments.runner import ExperimentRunner, RunResult
from backend.experiments.scenarios import Scenario, Timeline, find_scenario, parse_scenario
from backend.lab_session import LabSession
from backend.session import read_session
from tests.conftest import need, need_root
from tests.support.loopback_lab import LoopbackLab
from tests.support.sshd import Sshd
from tests.support.waiting import until
from tui.commands import run as run_command
from tui.commands.common import BadInput

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

# What the runner starts, by process name; none may be left when a run is over.
STARTED = ("ping", "sysbench", "dbench")


class LabUnderTest(Protocol):
    """What these tests need from a lab."""

    @property
    def lab_file(self) -> Path: ...

    def lab(self) -> LabConfig: ...

    def reset(self) -> None:
        """The guest runs nowhere; migrations neither slow nor failing."""

    def set_xl(self, host: str, **values: Any) -> None: ...

    def domains(self, host: str) -> list[str]: ...


@pytest.fixture(scope="module")
def loopback(sshd: Sshd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackLab]:
    need("tgtd", "tgtadm", "ping", "sysbench", "unshare")
    need_root()
    lab = LoopbackLab.start(tmp_path_factory.mktemp("loopback"), sshd)
    yield lab
    lab.stop()


@pytest.fixture
def testlab(loopback: LoopbackLab) -> LabUnderTest:
    loopback.reset()
    return loopback


def short(scenario: Scenario, **timeline: float) -> Scenario:
    """``scenario`` with a timeline of a few seconds (probes and workloads as they are)."""
    values = {"warmup_s": 0.0, "baseline_s": 2.0, "after_s": 2.0, **timeline}
    return scenario.model_copy(update={"timeline": Timeline(**values)})


def started_processes() -> list[str]:
    """Processes of this test (its children, the sshds' sessions) that a run starts."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        pid, ppid = int(entry.name), int(rest.split()[1])
        children.setdefault(ppid, []).append(pid)
        if comm in STARTED or "tests.support.fake_tools.xl" in cmdline:
            names[pid] = f"{pid} {cmdline.strip()}"
    found, pending = [], [os.getpid()]
    while pending:
        pid = pending.pop()
        if pid in names:
            found.append(names[pid])
        pending.extend(children.get(pid, []))
    return found


async def no_started_processes() -> None:
    """Once every probe and workload the run started has exited (no deadline: one left
    running is a hang, which the test's timeout reports)."""
    await until(lambda: not started_processes(), poll_s=0.1)


async def run_scenario(
    testlab: LabUnderTest,
    scenario: Scenario,
    log: Path,
    *,
    during: Any = None,
) -> tuple[RunResult | None, list[Event], ExperimentRunner]:
    """Run ``scenario`` and check that it left nothing running; ``during(runner, task,
    events)`` may act while it runs."""
    session = LabSession(testlab.lab(), log=log)
    events: list[Event] = []
    session.bus.subscribe(events.append)
    runner = session.experiment(scenario, records=True)
    task = asyncio.ensure_future(runner.run())
    result: RunResult | None = None
    try:
        if during is not None:
            await during(runner, task, events)
        if not task.cancelled():  # a ``during`` that cancels has seen the cancel itself
            result = await task
        # Before the test closes any connection (closing stops commands too): the runner
        # itself stopped everything it started.
        await no_started_processes()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await session.close()
    return result, events, runner


def phase_counts(report: Any, series: str) -> dict[str, int]:
    return dict(report.analysis.probes[series].counts)


# --------------------------------------------------------------------------- tests


async def test_migrate_ping_end_to_end(testlab: LabUnderTest, tmp_path: Path) -> None:
    lab = testlab.lab()
    # Stages 1.5 s apart: the migrating phase holds enough pings (>= 3 at 0.2 s) even when
    # a loaded machine publishes the phase late (at 0.5 s apart it held about 6).
    testlab.set_xl("xen1", migrate_stage_delay_s=1.5)
    scenario = short(find_scenario("migrate-ping"))
    result, events, _ = await run_scenario(testlab, scenario, tmp_path / "ping.jsonl")

    assert result is not None and result.status == "ok", result and result.error
    assert result.migrations_ok and len(result.migrations) == 1
    assert testlab.domains("xen1") == [] and testlab.domains("xen2") == ["guest"]

    session = read_session(tmp_path / "ping.jsonl")
    assert session.end is not None and session.end["status"] == "ok"
    header = session.header
    assert header["scenario"] == "migrate-ping"
    assert header["lab_sha256"] == lab.digest and header["lab_file"] == lab.source_file
    assert header["lab"]["guest"]["name"] == "guest"
    assert set(header["hosts"]) == {"storage", "xen1", "xen2"}
    assert all(h["kernel"] and h["reachable"] for h in header["hosts"].values())
    assert header["simulated"] is False

    report = build_report(session)
    (migration,) = report.analysis.migrations
    assert migration.finished and migration.ok
    assert (migration.source, migration.dest) == ("xen1", "xen2")
    # The fake pauses 1.5 s between its three stages; the driver times the command.
    assert migration.total_s is not None and migration.total_s >= 3.0
    # Measured by the driver between xl -vvv's suspend request and the target's start
    # (the fake prints them one stage, 1.5 s, apart).
    assert migration.downtime_ms is not None and migration.downtime_ms > 0
    assert migration.unreachable_s == 0.0 and migration.lost_probes == 0  # loopback loses none
    counts = phase_counts(report, "ping.rtt_ms")
    assert counts.get("baseline", 0) >= 5 and counts.get("after", 0) >= 5
    assert counts.get("migrating", 0) >= 3
    phases = [e.name for e in session.events if isinstance(e, Phase)]
    assert phases == ["baseline", "migrating", "after"]
    as_json = render_json(report)
    assert '"unreachable_s": 0.0' in as_json and '"downtime_ms": null' not in as_json
    # What the bus carried is what the log holds.
    assert [e.kind for e in events][: len(session.events)] == [e.kind for e in session.events]


async def test_migrate_sysbench_cpu_has_baseline_during_after(
    testlab: LabUnderTest, tmp_path: Path
) -> None:
    testlab.set_xl("xen1", migrate_stage_delay_s=1.5)
    scenario = short(find_scenario("migrate-sysbench-cpu"), baseline_s=3.0, after_s=3.0)
    result, _, _ = await run_scenario(testlab, scenario, tmp_path / "cpu.jsonl")

    assert result is not None and result.status == "ok", result and result.error
    report = build_report(read_session(tmp_path / "cpu.jsonl"))
    cpu = report.analysis.probes["sysbench-cpu.eps"]
    assert cpu.host == "guest"
    assert cpu.baseline is not None and cpu.baseline > 0
    assert cpu.during is not None and cpu.during > 0
    assert cpu.after is not None and cpu.after > 0
    assert cpu.during_change_pct is not None
    assert all(cpu.counts.get(phase, 0) >= 1 for phase in ("baseline", "migrating", "after"))


async def test_cancel_mid_migration_stops_everything(testlab: LabUnderTest, tmp_path: Path) -> None:
    # Held between its stages (10 min): the cancel comes before the suspend however
    # slow the machine (at 5 s apart that was a race with the clock).
    testlab.set_xl("xen1", migrate_stage_delay_s=600.0)
    scenario = parse_scenario(
        """
        id = "ping-and-cpu"
        title = "ping and sysbench cpu"
        [timeline]
        baseline_s = 2
        after_s = 2
        [[workloads]]
        kind = "sysbench-cpu"
        options = { threads = 2 }
        [[probes]]
        kind = "ping"
        where = "storage"
        """
    )

    async def cancel_once_xl_migrates(
        runner: Any, task: asyncio.Future[Any], events: list[Event]
    ) -> None:
        while not any(isinstance(e, MigrationProgress) for e in events):
            assert not task.done(), "the run ended before it migrated"
            await asyncio.sleep(0.05)
        assert started_processes(), "the probes should be running now"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await no_started_processes()

    log = tmp_path / "cancelled.jsonl"
    _, _, runner = await run_scenario(testlab, scenario, log, during=cancel_once_xl_migrates)

    assert runner.result is not None and runner.result.status == "interrupted"
    session = read_session(log)
    assert session.end is not None and session.end["status"] == "interrupted"
    report = build_report(session)
    assert report.end_status == "interrupted"
    (migration,) = report.analysis.migrations
    assert migration.finished and migration.ok is False
    assert migration.error is not None and "interrupted" in migration.error
    # Killed before the guest was suspended: the receiver dropped its copy (as xl does).
    assert testlab.domains("xen1") == ["guest"] and testlab.domains("xen2") == []
    finished = [e for e in session.events if isinstance(e, MigrationFinished)]
    assert len(finished) == 1
    assert report.analysis.probes["ping.rtt_ms"].counts.get("baseline", 0) >= 5


async def test_failed_migration_ends_the_run(testlab: LabUnderTest, tmp_path: Path) -> None:
    testlab.set_xl("xen1", fail_migrate="target")
    scenario = short(find_scenario("migrate-ping"))
    result, _, _ = await run_scenario(testlab, scenario, tmp_path / "failed.jsonl")

    assert result is not None and result.status == "failed"
    assert result.error is not None and "migration 1 from xen1 to xen2 failed" in result.error
    assert not result.migrations_ok
    session = read_session(tmp_path / "failed.jsonl")
    assert session.end is not None and session.end["status"] == "failed"
    (finished,) = [e for e in session.events if isinstance(e, MigrationFinished)]
    assert finished.ok is False and "problems at target" in (finished.error or "")
    # The run ended at the failure: no "after" phase.
    assert [e.name for e in session.events if isinstance(e, Phase)] == ["baseline", "migrating"]
    assert testlab.domains("xen1") == ["guest"]


async def test_lost_hypervisor_host_aborts_the_run(testlab: LabUnderTest, tmp_path: Path) -> None:
    scenario = short(find_scenario("migrate-ping"), baseline_s=30.0)

    async def drop_xen2(runner: Any, task: asyncio.Future[Any], events: list[Event]) -> None:
        while not any(isinstance(e, Phase) for e in events):
            assert not task.done(), "the run ended before its baseline"
            await asyncio.sleep(0.05)
        runner.hosts["xen2"].drop()  # as a network failure would

    result, _, _ = await run_scenario(testlab, scenario, tmp_path / "lost.jsonl", during=drop_xen2)
    assert result is not None and result.status == "failed"
    assert result.error is not None and "lost the connection to xen2" in result.error
    session = read_session(tmp_path / "lost.jsonl")
    assert session.end is not None and session.end["status"] == "failed"
    # It ended at the loss, in its 30 s baseline, not after it.
    assert [e.name for e in session.events if isinstance(e, Phase)] == ["baseline"]
    assert testlab.domains("xen1") == ["guest"]


async def test_a_workload_that_fails_before_the_migration_ends_the_run(
    testlab: LabUnderTest, tmp_path: Path
) -> None:
    need("dbench")
    scenario = parse_scenario(
        """
        id = "dbench-nowhere"
        title = "dbench in a directory the guest does not have"
        [timeline]
        warmup_s = 1
        baseline_s = 20
        after_s = 1
        [[workloads]]
        kind = "dbench"
        options = { directory = "/nonexistent/miglab-test" }
        [[probes]]
        kind = "ping"
        where = "storage"
        """
    )
    result, _, _ = await run_scenario(testlab, scenario, tmp_path / "dbench.jsonl")

    assert result is not None and result.status == "failed"
    assert result.error is not None
    assert result.error.startswith("dbench on guest ended before the run did: `dbench -t 5 ")
    assert "/nonexistent/miglab-test" in result.error
    session = read_session(tmp_path / "dbench.jsonl")
    # It ended in the warm-up or the baseline: no migration was started.
    phases = [e.name for e in session.events if isinstance(e, Phase)]
    assert "migrating" not in phases and phases[0] == "warmup"
    assert testlab.domains("xen1") == ["guest"] and testlab.domains("xen2") == []


# --------------------------------------------------------------------------- the command line


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="miglab")
    run_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["run", *argv])
    code: int = args.handler(args)
    return code


def test_dry_run_prints_the_plan_and_changes_nothing(
    testlab: LabUnderTest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {host: testlab.domains(host) for host in ("xen1", "xen2")}
    log = tmp_path / "never.jsonl"
    code = cli(
        "migrate-sysbench-cpu", "--lab", str(testlab.lab_file), "--dry-run", "--log", str(log)
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "xen1: xl create /etc/xen/guest.cfg" in out
    assert "xen1: xl -vvv migrate guest 127.0.0.3" in out
    assert "guest: sysbench cpu --cpu-max-prime=1000 --threads=20" in out
    assert {host: testlab.domains(host) for host in ("xen1", "xen2")} == before
    assert not log.exists()
    assert started_processes() == []


def test_cli_run_exit_codes(
    testlab: LabUnderTest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    testlab.set_xl("xen1", fail_migrate="handshake")
    scenario = tmp_path / "quick-ping.toml"
    scenario.write_text(
        'id = "quick-ping"\ntitle = "ping"\n[timeline]\nbaseline_s = 1\nafter_s = 1\n'
        '[[probes]]\nkind = "ping"\nwhere = "storage"\n'
    )
    log = tmp_path / "cli.jsonl"
    code = cli(str(scenario), "--lab", str(testlab.lab_file), "--log", str(log))
    out = capsys.readouterr().out
    assert code == 1
    assert "migration xen1 -> xen2: FAILED" in out and "finished: failed" in out
    assert f"session log: {log}" in out
    finished = [e for e in read_session(log).events if isinstance(e, MigrationFinished)]
    assert [f.ok for f in finished] == [False]
    with pytest.raises(BadInput, match="never overwritten"):  # exit 2 in tui.cli
        cli(str(scenario), "--lab", str(testlab.lab_file), "--log", str(log))


def test_cli_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="unknown scenario 'nope'; built-in: disk-iscsi-vs-local"):
        cli("nope", "--lab", str(tmp_path / "lab.toml"))
    with pytest.raises(BadInput, match="--speed and --seed are for the simulated lab"):
        cli("migrate-ping", "--lab", str(tmp_path / "lab.toml"), "--speed", "5")


def test_headless_printer_lines() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    t0 = 1_800_000_000.0
    events: list[Event] = [
        ExperimentStarted(
            t=t0,
            scenario="migrate-ping",
            title="ping alone",
            repetitions=2,
            migrations=1,
            sequence="together",
            timeline={"baseline_s": 60.0},
        ),
        RepetitionStarted(t=t0 + 0.5, number=1, of=2),
        Phase(t=t0 + 0.5, name="baseline"),
        Sample(t=t0 + 1, probe="ping", host="storage", values={"rtt_ms": 0.1}),
        MigrationFinished(
            t=t0 + 62.25, domain="g", source="xen1", dest="xen2", ok=True, total_time_ms=2250.0
        ),
        MigrationFinished(
            t=t0 + 70, domain="g", source="xen2", dest="xen1", ok=False, error="no route"
        ),
        Note(t=t0 + 71, text="all fine"),
        Note(t=t0 + 72, text="xen2 is slow", level="warning"),
        ExperimentFinished(t=t0 + 80, scenario="migrate-ping", status="failed", error="boom"),
    ]
    for event in events:
        printer(event)
    assert out.getvalue().splitlines() == [
        "    0.0 s  migrate-ping: ping alone (2 repetitions)",
        "    0.5 s  rep 1/2  baseline",
        "   62.2 s  rep 1/2  migration xen1 -> xen2: ok, 2.25 s",
        "   70.0 s  rep 1/2  migration xen2 -> xen1: FAILED: no route",
        "   72.0 s  warning: xen2 is slow",
        "   80.0 s  finished: failed (boom)",
    ]


def test_a_disk_comparison_needs_a_way_to_switch_disks(tmp_path: Path) -> None:
    lab = parse_lab(
        """
        [lab]
        name = "x"
        link_mbit = 100
        [hosts.s]
        address = "local"
        [hosts.a]
        address = "local"
        [hosts.b]
        address = "local"
        [storage]
        host = "s"
        driver = "tgt"
        iqn = "iqn.2024-01.lab.x:disk"
        device = "/srv/disk.img"
        portal = "127.0.0.1"
        [hypervisor]
        driver = "xen"
        hosts = ["a", "b"]
        [guest]
        name = "g"
        address = "127.0.0.1"
        vcpus = 1
        memory_mb = 64
        config = "/etc/xen/g.cfg"
        """
    )
    scenario = find_scenario("disk-iscsi-vs-local")
    runner = LabSession(lab).experiment(scenario)
    assert "no way yet to move the guest to a local disk" in (runner.unsupported() or "")

    async def switch(disk: str) -> None:
        return None

    able = ExperimentRunner(LabSession(lab), scenario, switch_disk=switch)
    assert able.unsupported() is None
