"""The simulated lab plays QEMU when the lab says ``driver = "qemu"``.

miglab's own qemu driver (``backend/drivers/hv_qemu.py``) runs unchanged against the
simulated hosts: it launches ``qemu-system-x86_64 ... -daemonize`` (``-incoming`` on the
destination), talks QMP over the SSH connection's Unix-socket stream, polls
``query-migrate`` on the simulated clock and quits the source QEMU. The QMP replies are
checked against QEMU 7.2's real sessions (``tests/data/qmp``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backend.config import LabConfig, load_lab
from backend.drivers.qmp import QmpClient, QmpError
from backend.events import MigrationFinished, MigrationProgress
from backend.sim import qmp_server
from backend.sim.clock import VirtualRuntime
from backend.sim.commands import qemu
from backend.sim.commands.base import Captured
from backend.sim.direct import DirectRunner
from backend.sim.labs import build_world, model_for, preparation
from backend.sim.world import World
from tests.support.sim_experiment import Experiment, run_experiment
from tui.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
QEMU_LAB = DATA / "predictions" / "lab-100.toml"
COMPARED = ("sample", "phase", "migration.progress", "migration.finished", "domain.state")


def simulate(log: Path, speed: str, lab: Path = QEMU_LAB) -> list[dict[str, Any]]:
    with pytest.raises(SystemExit) as exit:
        main(["run", "migrate-ping", "--sim", "--lab", str(lab), "--quick", "--seed", "3",
              "--speed", speed, "--log", str(log)])  # fmt: skip
    assert exit.value.code == 0
    return [json.loads(line) for line in log.read_text().splitlines()]


def comparable(events: list[dict[str, Any]]) -> list[str]:
    epoch = events[0]["simulation"]["epoch"]
    out = []
    for event in events[1:]:
        if event["kind"] in COMPARED:
            out.append(json.dumps({**event, "t": round(event["t"] - epoch, 6)}, sort_keys=True))
    return out


def test_a_qemu_lab_is_driven_over_qmp_the_same_at_any_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fast = simulate(tmp_path / "max.jsonl", "max")
    slow = simulate(tmp_path / "1000.jsonl", "1000")
    assert comparable(fast) == comparable(slow)

    argvs = [e["argv"] for e in fast if e["kind"] == "command.started"]
    launches = [a for a in argvs if a[0].endswith("qemu-system-x86_64") and "-daemonize" in a]
    assert len(launches) == 2 and "-incoming" in launches[1] and "-incoming" not in launches[0]
    assert not any(a[0] == "xl" for a in argvs)
    # QMP-shaped progress: QEMU's statuses, dirty-sync rounds, expected downtime.
    progress = [e for e in fast if e["kind"] == "migration.progress"]
    assert {p["status"] for p in progress} >= {"setup", "active"}
    syncs = [p["iteration"] for p in progress if p["status"] != "setup"]
    assert syncs == sorted(syncs) and syncs[0] == 1 and syncs[-1] >= 2
    assert progress[1]["expected_downtime_ms"] == 300
    (finished,) = [e for e in fast if e["kind"] == "migration.finished"]
    # QEMU's own figures, from its last query-migrate reply.
    assert finished["ok"] and finished["downtime_ms"] is not None
    assert 100 < finished["downtime_ms"] < 400 and 11_000 < finished["total_time_ms"] < 15_000
    assert finished["guest_host"] == "host2" and finished["iterations"] == progress[-1]["iteration"]
    # Waits on the simulated clock: the driver's own wall time is simulated seconds.
    assert finished["wall_time_ms"] >= finished["total_time_ms"]


def test_the_study_lab_still_plays_xl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["run", "migrate-ping", "--sim", "--quick", "--speed", "max", "--log",
              str(tmp_path / "x.jsonl")])  # fmt: skip
    assert exit.value.code == 0
    events = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    argvs = [e["argv"] for e in events if e["kind"] == "command.started"]
    assert any(a[0] == "xl" and "migrate" in a for a in argvs)
    assert not any("qemu" in a[0] for a in argvs)


# -- the simulated QEMU's QMP, as QEMU 7.2 answers ------------------------------------------


def real_replies(name: str) -> list[dict[str, Any]]:
    lines = (DATA / "qmp" / name).read_text().splitlines()
    return [json.loads(e["line"]) for e in map(json.loads, lines) if e["dir"] == "s2c"]


@pytest.fixture
def lab() -> LabConfig:
    return load_lab(QEMU_LAB)


async def booted(lab: LabConfig) -> tuple[World, VirtualRuntime]:
    runtime = VirtualRuntime(model_for(lab))
    world = build_world(lab, runtime)
    for host, argv in preparation(lab):
        out = Captured(runtime)
        assert await world.execute(world.node(host), argv, out) == 0, out.text("stderr")
    return world, runtime


async def test_qmp_session_answers_as_qemu_7_2(lab: LabConfig) -> None:
    world, _ = await booted(lab)
    host = lab.hypervisor.hosts[0]
    (proc,) = qemu.processes(world.node(host)).values()
    runner = DirectRunner(world, world.node(host))
    reader, writer = await runner.open_unix_stream(proc.qmp_path)
    client = await QmpClient.connect(reader, writer, timeout=5)
    assert qmp_server.GREETING == real_replies("source.jsonl")[0]
    assert client.greeting.qemu_version == "7.2.22"
    assert (await client.query_status()).status == "running"
    assert (await client.execute("query-migrate")) == {}
    with pytest.raises(QmpError) as error:
        await client.execute("no-such-command")
    assert str(error.value).endswith(
        "CommandNotFound: The command no-such-command has not been found"
    )
    with pytest.raises(QmpError, match=r"expects an integer in the range of 0 to \(2000 \* 1000\)"):
        await client.execute("migrate-set-parameters", {"downtime-limit": 9_999_999})
    # Nothing listens on the destination yet: QEMU says so in query-migrate.
    await client.execute("migrate", {"uri": "tcp:127.0.0.1:4444"})
    status = await client.query_migrate()
    assert status.status == "failed" and "Connection refused" in (status.error_desc or "")
    await client.quit(timeout=5)
    await client.close()
    await runner.close()
    assert qemu.processes(world.node(host)) == {}
    assert world.model.guest.status == "off"  # QEMU took its guest with it


async def test_a_second_migrate_is_refused_while_one_runs(lab: LabConfig) -> None:
    world, runtime = await booted(lab)
    first, second = lab.hypervisor.hosts
    runners = {h: DirectRunner(world, world.node(h)) for h in (first, second)}
    incoming = [*preparation(lab)[-1][1], "-incoming", "tcp:0:4444"]
    for path in ("-pidfile", "-qmp", "-serial"):
        at = incoming.index(path)
        incoming[at + 1] = incoming[at + 1].replace(f".{first}.", f".{second}.")
    out = Captured(runtime)
    assert await world.execute(world.node(second), incoming, out) == 0, out.text("stderr")
    (src,) = qemu.processes(world.node(first)).values()
    (dst,) = qemu.processes(world.node(second)).values()
    client = await QmpClient.connect(*await runners[first].open_unix_stream(src.qmp_path))
    dest = await QmpClient.connect(*await runners[second].open_unix_stream(dst.qmp_path))
    assert (await dest.query_status()).status == "inmigrate"
    await client.execute("migrate", {"uri": "tcp:127.0.0.1:4444"})
    assert (await client.query_migrate()).status == "setup"
    with pytest.raises(QmpError, match="There's a migration process in progress"):
        await client.execute("migrate", {"uri": "tcp:127.0.0.1:4444"})
    with pytest.raises(QmpError, match="There's a migration process in progress"):
        await client.execute("migrate-set-capabilities", {"capabilities": []})
    await client.migrate_cancel()
    assert (await client.query_migrate()).status == "cancelled"
    assert (await client.query_status()).status == "running"
    assert dst.pid not in qemu.processes(world.node(second))  # its incoming failed: it exits
    for c in (client, dest):
        await c.close()
    for r in runners.values():
        await r.close()


async def test_a_qemu_lab_is_predicted_through_the_qemu_driver(lab: LabConfig) -> None:
    outcome = await run_experiment(Experiment(lab=lab, baseline_s=5, after_s=2))
    assert outcome.xl is None and outcome.qemu is not None
    result, events = outcome.qemu
    summary = outcome.migration
    assert summary is not None and summary.downtime_s is not None and result.ok
    progress = [e for e in events if isinstance(e, MigrationProgress)]
    (finished,) = [e for e in events if isinstance(e, MigrationFinished)]
    assert {p.model_dump()["status"] for p in progress} >= {"setup", "active"}
    # The driver reports what QEMU's last reply said, which is the model's migration.
    assert finished.downtime_ms == round(summary.downtime_s * 1000)
    assert result.iterations == summary.dirty_syncs
