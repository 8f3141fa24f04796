"""A scenario sets the simulated lab's model inputs (``[simulation]``), over lab.toml's.

Bad values are named by file, line and key (exit 2), as lab.toml's are; the simulated
run's log header says where each input came from: the scenario, lab.toml, or a default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.config import parse_lab
from backend.experiments.scenarios import find_scenario, parse_scenario
from backend.sim.assumptions import SOURCES, ScenarioInputs, assumptions
from backend.sim.study import STUDY_LAB_TOML
from backend.tomlfile import ConfigError
from tui.cli import main
from tui.commands.run import scenario_inputs

BUILTIN = Path(__file__).resolve().parents[2] / "backend/experiments/scenarios/migrate-ping.toml"


def scenario_text(extra: str) -> str:
    text = BUILTIN.read_text().replace('id = "migrate-ping"', 'id = "ping-inputs"')
    return text + "\n" + extra


def test_a_scenario_takes_a_simulation_table() -> None:
    scenario = parse_scenario(scenario_text("[simulation]\ndirtier_mib_s = 80.0\n"), "s.toml")
    assert scenario.simulation is not None and scenario.simulation.dirtier_mib_s == 80.0
    assert scenario.quick().simulation == scenario.simulation
    inputs = scenario_inputs(scenario)
    assert inputs is not None and inputs.source == "scenario s.toml [simulation]"
    assert find_scenario("migrate-ping").simulation is None  # the built-ins set none


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ("dirtier_mib_s = -1.0", "simulation.dirtier_mib_s", "greater than 0"),
        ("zero_fraction = 1.5", "simulation.zero_fraction", "at most 1"),
        ('sender_cores = "all"', "simulation.sender_cores", "number"),
        ("dirty_rate = 3.0", "simulation.dirty_rate", "unknown key"),
    ],
)
def test_a_bad_input_names_file_line_and_key(table: str, key: str, words: str) -> None:
    text = scenario_text(f"[simulation]\n{table}\n")
    with pytest.raises(ConfigError) as error:
        parse_scenario(text, "s.toml")
    (problem,) = error.value.errors
    assert (problem.file, problem.key) == ("s.toml", key)
    assert problem.line == text.splitlines().index(table) + 1
    assert words in problem.message


def test_the_scenario_wins_over_the_lab_and_each_input_says_where_from() -> None:
    lab = parse_lab(
        STUDY_LAB_TOML + "\n[simulation]\ndirtier_mib_s = 300.0\nsend_cores_per_mbit = 0.002\n",
        file="<lab>",
    )
    scenario = parse_scenario(scenario_text("[simulation]\ndirtier_mib_s = 90.0\n"), "s.toml")
    own = scenario_inputs(scenario)
    assert own is not None
    found = {a.key: (a.value, a.source) for a in assumptions(lab, own).inputs}
    assert found["dirtier_mib_s"] == (90.0, "scenario s.toml [simulation]")
    assert found["send_cores_per_mbit"] == (0.002, SOURCES["lab"])
    assert found["xen_version"] == ("4.4", SOURCES["hosts"])
    alone = {a.key: a.value for a in assumptions(lab).inputs}
    assert alone["dirtier_mib_s"] == 300.0
    xen = ScenarioInputs(scenario.simulation.model_copy(update={"xen_version": "4.17"}), "x")  # type: ignore[union-attr]
    assert assumptions(lab, xen).rules.key == "xen-v2"


def test_a_simulated_run_logs_where_its_inputs_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ping-inputs.toml"
    path.write_text(scenario_text("[simulation]\nsend_cores_per_mbit = 0.001\n"))
    log = tmp_path / "run.jsonl"
    with pytest.raises(SystemExit) as exit:
        main(["run", str(path), "--sim", "--quick", "--speed", "max", "--log", str(log)])
    assert exit.value.code == 0
    header = json.loads(log.read_text().splitlines()[0])
    inputs = {i["key"]: i for i in header["simulation"]["model"]["inputs"]}
    assert inputs["send_cores_per_mbit"]["value"] == 0.001
    assert inputs["send_cores_per_mbit"]["source"] == f"scenario {path} [simulation]"
    assert inputs["dirtier_mib_s"]["source"] == SOURCES["study"]
    report = " ".join(capsys.readouterr().out.split())  # the report's top, unwrapped
    # (the report wraps its lines, a long path at its hyphens too)
    assert "send_cores_per_mbit 0.001 cores per Mbit/s (scenario /" in report


def test_a_bad_scenario_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(scenario_text("[simulation]\nzero_fraction = -0.5\n"))
    with pytest.raises(SystemExit) as exit:
        main(["run", str(path), "--sim", "--quick", "--log", str(tmp_path / "x.jsonl")])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    line = path.read_text().splitlines().index("zero_fraction = -0.5") + 1
    assert f"{path}:{line}: simulation.zero_fraction:" in err and "Traceback" not in err
