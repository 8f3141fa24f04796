"""A probe added in a test: registering it is all the scenario schema, the runner's
commands, the metrics and the report need (it runs for real in
tests/integration/test_probe_added_runs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import ConfigError, load_lab
from backend.events import Phase, Sample
from backend.experiments.metrics import analyze
from backend.experiments.runner import ExperimentRunner
from backend.experiments.scenarios import ENTRY_CLASSES, parse_scenario
from backend.lab_session import LabSession
from backend.probes import PROBES, new_parser
from tests.support.extra_probe import KIND, LOADAVG, SCENARIO, LoadavgOptions

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(PROBES, KIND, LOADAVG)
    yield


def test_unknown_until_registered() -> None:
    with pytest.raises(ConfigError, match=r"probes\[0\]\.kind: unknown kind 'loadavg'"):
        parse_scenario(SCENARIO, "loadavg.toml")
    assert KIND not in ENTRY_CLASSES


def test_the_schema_takes_the_registered_probe(registered: None) -> None:
    scenario = parse_scenario(SCENARIO, "loadavg.toml")
    (entry,) = scenario.probes
    assert entry.kind == KIND and entry.probe is LOADAVG and entry.place == "guest"
    assert entry.options == LoadavgOptions(interval_s=1)
    assert KIND in ENTRY_CLASSES and sorted(ENTRY_CLASSES) == sorted(PROBES)
    # Its options are checked at load like any probe's, the error at file, line and key.
    bad = SCENARIO.replace("interval_s = 1", "interval_s = 0")
    with pytest.raises(
        ConfigError, match=r"loadavg\.toml:12: probes\[0\]\.options\.interval_s: must be at least 1"
    ):
        parse_scenario(bad, "loadavg.toml")
    typo = SCENARIO.replace("interval_s = 1", "intervall_s = 1")
    with pytest.raises(
        ConfigError, match=r"expected one of interval_s \(did you mean 'interval_s'"
    ):
        parse_scenario(typo, "loadavg.toml")


def test_and_forgets_it_when_unregistered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROBES, KIND, LOADAVG)
    parse_scenario(SCENARIO, "loadavg.toml")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="unknown kind 'loadavg'"):
        parse_scenario(SCENARIO, "loadavg.toml")


async def test_the_runner_plans_its_command(registered: None) -> None:
    lab = load_lab(ROOT / "lab.toml")  # the example lab: nothing is connected here
    scenario = parse_scenario(SCENARIO, "loadavg.toml")
    session = LabSession(lab)
    runner = ExperimentRunner(session, scenario)
    (entry,) = scenario.probes
    argv = runner._command(entry)
    # The run's time limit: 3 + 3 s planned, a migration's allowance, the margin.
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["miglab-loadavg", "1", "1926"]
    await session.close()


def test_its_samples_are_metrics_and_report_rows(registered: None) -> None:
    parser = new_parser(KIND, "guest", iter([100.0, 101.0, 105.0, 106.0]).__next__)
    lines = ["0.10 0.20 0.30 1/100 42", "oops", "0.30 0.20 0.30 2/100 43"]
    lines += ["0.50 0.25 0.30 1/101 44", "0.70 0.30 0.30 1/101 45"]
    samples = [s for line in lines for s in parser.feed(line)]
    assert [s.values["load1"] for s in samples] == [0.1, 0.3, 0.5, 0.7]
    assert samples[0].unit == {"load1": "", "load5": "", "load15": ""}
    events = [Phase(name="baseline", t=99.0), *samples[:2], Phase(name="after", t=104.0)]
    events += samples[2:]
    analysis = analyze(events, t0=99.0)
    series = analysis.series["loadavg.load1"]
    assert list(series.values) == [0.1, 0.3, 0.5, 0.7] and series.spec is LOADAVG.metrics[0]
    assert all(isinstance(s, Sample) and s.probe == KIND for s in samples)
