"""A probe miglab does not ship, registered by the test, runs on the loopback lab.

The proof that a new probe touches backend/probes/ only: ``loadavg``
(:mod:`tests.support.extra_probe`) goes into :data:`backend.probes.PROBES`, a scenario
file names it, and the unchanged runner runs it in the guest (a real sshd on
127.0.0.1, a real ``sh``, ``cat`` and ``sleep``) around a migration: its samples are in
the session log, its metric in the report, and nothing of it is left running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.events import CommandStarted, Sample
from backend.experiments.report import build_report, render_text
from backend.experiments.runner import ExperimentRunner
from backend.experiments.scenarios import load_scenario
from backend.lab_session import LabSession
from backend.probes import PROBES
from backend.session import read_session
from tests.conftest import need, need_root
from tests.support.extra_probe import KIND, LOADAVG, SCENARIO
from tests.support.loopback_lab import LoopbackLab
from tests.support.sshd import Sshd
from tests.support.waiting import until

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def loopback(sshd: Sshd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackLab]:
    need("tgtd", "tgtadm", "unshare")
    need_root()
    lab = LoopbackLab.start(tmp_path_factory.mktemp("loopback"), sshd)
    yield lab
    lab.stop()


def loadavg_processes() -> list[str]:
    """This machine's processes running the probe's script (its argv names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"miglab-loadavg" in cmdline:
                found.append(entry.name)
    return found


async def test_a_registered_probe_runs_and_is_recorded(
    loopback: LoopbackLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loopback.reset()
    file = tmp_path / "loadavg.toml"
    file.write_text(SCENARIO)
    monkeypatch.setitem(PROBES, KIND, LOADAVG)
    scenario = load_scenario(file)
    lab = loopback.lab()
    log = tmp_path / "loadavg.jsonl"
    session = LabSession(lab, log=log)
    try:
        result = await ExperimentRunner(session, scenario, records=True).run()
        await until(lambda: not loadavg_processes(), poll_s=0.1)  # stopped with the run
    finally:
        await session.close()
    assert result.ok, result.error
    assert result.migrations_ok and len(result.migrations) == 1

    events = read_session(log).events
    started = [e for e in events if isinstance(e, CommandStarted) and "miglab-loadavg" in e.argv]
    assert len(started) == 1 and started[0].host == lab.guest.name
    samples = [e for e in events if isinstance(e, Sample) and e.probe == KIND]
    # One reading a second over a 3 s baseline, the migration and a 3 s after.
    assert len(samples) >= 5
    for sample in samples:
        assert sample.host == lab.guest.name and sample.t is not None
        assert {"load1", "load5", "load15", "running", "tasks"} <= set(sample.values)
        assert all(v is not None and v >= 0 for v in sample.values.values())
    # The metrics take its series from the probe: readings before and after the migration.
    series = result.analysis.series["loadavg.load1"]
    assert series.spec is LOADAVG.metrics[0] and len(series.values) == len(samples)
    metrics = result.analysis.probes["loadavg.load1"]
    assert metrics.counts["baseline"] >= 2 and metrics.counts["after"] >= 2
    assert metrics.baseline is not None and metrics.after is not None
    # The report's table has its row, labelled as the probe says.
    assert "load (1 min)" in render_text(build_report(read_session(log)))
