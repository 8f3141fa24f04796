"""Campaign files: the errors name file, line and key (exit 2); the plan; what resumes."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from backend.config import load_lab
from backend.experiments.campaign import (
    apply_parameters,
    load_campaign,
    log_is_complete,
    parse_campaign,
    pending,
    plan_runs,
    set_aside,
)
from backend.tomlfile import ConfigError
from tui import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "backend" / "experiments" / "campaigns" / "link-speed.toml"

GOOD = """\
name = "c"
scenarios = ["migrate-ping", "migrate-dbench"]
repetitions = 2

[parameters.lab]
link_mbit = [100, 1000]

[parameters.hypervisor]
convergence = ["none", "auto-converge"]
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_campaign(text, "c.toml")
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "c"\nscenarios = [\n', "c.toml:2: TOML syntax error"),
        ('name = "c"\nscenarios = ["migrate-pong"]\n', "c.toml:2: scenarios[0]: unknown scenario"),
        ('name = "C D"\nscenarios = ["migrate-ping"]\n', "c.toml:1: name: 'C D': use lower case"),
        ('name = "c"\nscenarios = ["migrate-ping"]\nrepetitions = 0\n', "c.toml:3: repetitions"),
        ('name = "c"\nscenarios = ["migrate-ping"]\nrepeats = 2\n', "c.toml:3: repeats: unknown"),
        (
            'name = "c"\nscenarios = ["migrate-ping"]\n[parameters.lab]\nlink_mbit = [0]\n',
            "c.toml:4: parameters.lab.link_mbit[0]: must be at least 1, got 0",
        ),
        (
            'name = "c"\nscenarios = ["migrate-ping"]\n[parameters.guest]\nmemry_mb = [512]\n',
            "c.toml:4: parameters.guest.memry_mb: not a parameter a campaign can vary",
        ),
        (
            'name = "c"\nscenarios = ["migrate-ping"]\n[parameters.hypervisor]\n'
            'convergence = ["none", "fast"]\n',
            "c.toml:4: parameters.hypervisor.convergence[1]: expected 'none'",
        ),
        (
            'name = "c"\nscenarios = ["migrate-ping"]\n[parameters.lab]\nlink_mbit = [100, 100]\n',
            "c.toml:4: parameters.lab.link_mbit[1]: 100 is given twice",
        ),
        (
            'name = "c"\nscenarios = ["migrate-ping"]\n[parameters.sim]\nseed = [-1]\n',
            "c.toml:4: parameters.sim.seed[0]: a seed is a whole number",
        ),
        (
            'name = "c"\nscenarios = ["migrate-ping", "migrate-ping"]\n',
            "c.toml:2: scenarios[1]: 'migrate-ping' is named twice",
        ),
    ],
)
def test_a_bad_campaign_file_is_named_by_file_line_and_key(text: str, expected: str) -> None:
    found = errors(text)
    assert any(message.startswith(expected) for message in found), found


def test_every_problem_is_reported_in_one_pass() -> None:
    found = errors(
        'name = "c"\nscenarios = ["migrate-pong"]\n[parameters.lab]\nlink_mbit = [0, true]\n'
    )
    assert [m.split(": ")[0:2] for m in found] == [
        ["c.toml:2", "scenarios[0]"],
        ["c.toml:4", "parameters.lab.link_mbit[0]"],
        ["c.toml:4", "parameters.lab.link_mbit[1]"],
    ]


def test_the_cli_says_it_in_one_paragraph_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "c"\nscenarios = ["migrate-ping"]\n[parameters.lab]\nspeed = [1]\n')
    with pytest.raises(SystemExit) as exited:
        cli.main(["campaign", str(bad), "--sim"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"miglab: {bad}:4: parameters.lab.speed: not a parameter")
    assert "Traceback" not in err


def test_a_seed_needs_the_simulated_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "seeds.toml"
    file.write_text('name = "s"\nscenarios = ["migrate-ping"]\n[parameters.sim]\nseed = [1]\n')
    with pytest.raises(SystemExit) as exited:
        cli.main(["campaign", str(file), "--lab", str(ROOT / "lab.toml")])
    assert exited.value.code == 2
    assert "parameters.sim.seed varies the simulated lab: add --sim" in capsys.readouterr().err


def test_scenario_files_are_found_beside_the_campaign(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        (ROOT / "backend/experiments/scenarios/migrate-ping.toml")
        .read_text()
        .replace('id = "migrate-ping"', 'id = "mine"')
    )
    file = tmp_path / "c.toml"
    file.write_text('name = "c"\nscenarios = ["mine.toml"]\n')
    assert [s.id for s in load_campaign(file).scenarios] == ["mine"]


def test_the_shipped_example_loads() -> None:
    campaign = load_campaign(EXAMPLE)
    assert len(plan_runs(campaign, Path("out"))) == 3 * 2 * 3


def test_the_runs_go_repetition_by_repetition_across_every_group() -> None:
    campaign = parse_campaign(GOOD, "c.toml")
    runs = plan_runs(campaign, Path("out"))
    assert len(runs) == 2 * 2 * 2 * 2
    assert [r.index for r in runs] == list(range(1, 17))
    assert {r.repetition for r in runs[:8]} == {1} and {r.repetition for r in runs[8:]} == {2}
    assert runs[0].log == Path("out/migrate-ping_link_mbit-100_convergence-none/r1.jsonl")
    assert runs[0].parameters == {"lab.link_mbit": 100, "hypervisor.convergence": "none"}
    assert len({r.log for r in runs}) == 16
    header = runs[-1].header(campaign)
    assert header["group"] == "migrate-dbench_link_mbit-1000_convergence-auto-converge"
    assert header["run"].endswith("/r2") and header["of"] == 2


def test_a_run_gets_the_lab_with_its_parameters_and_a_seed_per_repetition() -> None:
    lab = load_lab(ROOT / "lab.toml")
    text = GOOD + "\n[parameters.sim]\nseed = [7]\n"
    runs = plan_runs(parse_campaign(text, "c.toml"), Path("out"))
    changed = apply_parameters(lab, runs[-1].parameters)
    assert changed.lab.link_mbit == 1000 and changed.hypervisor.convergence == "auto-converge"
    assert changed.guest == lab.guest and lab.lab.link_mbit != 1000  # the original unchanged
    assert [r.seed for r in runs if r.group == runs[0].group] == [7, 8]


def _log(path: Path, status: str | None, *, cut: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"kind": "session.header", "t": 1.0})]
    if status is not None:
        lines.append(
            json.dumps({"kind": "session.end", "t": 2.0, "status": status}, separators=(",", ":"))
        )
    text = "\n".join(lines) + "\n"
    path.write_text(text[:-3] if cut else text)


def test_only_a_log_that_ended_ok_is_a_done_run(tmp_path: Path) -> None:
    runs = plan_runs(parse_campaign(GOOD, "c.toml"), tmp_path)
    _log(runs[0].log, "ok")
    _log(runs[1].log, "interrupted")
    _log(runs[2].log, "failed")
    _log(runs[3].log, None)  # cut short: no end marker
    _log(runs[4].log, "ok", cut=True)
    _log(runs[6].log, "ok")  # done out of order (a hand-made log): not run again
    assert log_is_complete(runs[0].log) and not log_is_complete(runs[5].log)
    left = pending(runs)
    assert [r.index for r in left][:5] == [2, 3, 4, 5, 6]
    assert runs[6] not in left and len(left) == 14


def test_an_incomplete_log_is_set_aside_never_overwritten(tmp_path: Path) -> None:
    log = tmp_path / "g" / "r1.jsonl"
    _log(log, "interrupted")
    first = set_aside(log)
    _log(log, "failed")
    second = set_aside(log)
    assert first == log.with_name("r1.jsonl.incomplete-1")
    assert second == log.with_name("r1.jsonl.incomplete-2")
    assert not log.exists() and "interrupted" in first.read_text()
    assert set_aside(log) is None


def test_dry_run_lists_what_is_done_and_left(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(GOOD)
    runs = plan_runs(load_campaign(file), tmp_path / "out")
    _log(runs[0].log, "ok")
    args = cli._parser().parse_args(
        ["campaign", str(file), "--sim", "--dry-run", "--out", str(tmp_path / "out")]
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.handler(args) == 0
    text = out.getvalue()
    assert "16 runs (2 scenarios x 4 groups x 2 repetitions)" in text
    assert "1 done, 15 to run" in text
    assert text.count(" done ") == 1 and text.count("to run  ") == 15


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", ": scenarios: required"),
        (b'name = "c"\nscenarios = ["migrate-ping"]\nrepetitions = ' + b"9" * 5000 + b"\n", ":3:"),
        (b'name = "\xff"\n', ":1: the file is not UTF-8 text"),
        (b"a = " + b"[" * 5000 + b"\n", ":1:"),
    ],
)
def test_a_file_that_is_no_campaign_is_a_message_not_a_traceback(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    file = tmp_path / "c.toml"
    file.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_campaign(file)
    assert expected in str(caught.value) and str(caught.value).startswith(str(file))


def test_a_missing_campaign_file_is_named() -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.toml: no such campaign file"):
        load_campaign("nowhere.toml")
