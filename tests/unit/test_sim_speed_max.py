"""`miglab run --sim --speed max`: the same run as at a finite speed, the clock bound by the CPU.

And the simulated run's log header and report say which pre-copy model it used and what
the prediction rests on.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from backend.experiments.report import load_report, render_text
from tui.cli import main
from tui.commands import run as run_command

COMPARED = ("sample", "phase", "migration.progress", "migration.finished", "domain.state")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="miglab")
    run_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["run", "migrate-ping", *argv])


def test_speed_takes_max() -> None:
    assert parse("--sim", "--speed", "max").speed == math.inf
    assert parse("--sim", "--speed", "MAX").speed == math.inf
    assert parse("--sim", "--speed", "1000").speed == 1000.0


def test_a_speed_above_1000_names_max(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        parse("--sim", "--speed", "5000")
    assert exit.value.code == 2
    assert "or max" in capsys.readouterr().err


def simulate(log: Path, speed: str) -> tuple[dict[str, object], list[str]]:
    with pytest.raises(SystemExit) as exit:
        main(["run", "migrate-ping", "--sim", "--quick", "--seed", "7", "--speed", speed,
              "--log", str(log)])  # fmt: skip
    assert exit.value.code == 0
    lines = log.read_text().splitlines()
    header = json.loads(lines[0])
    epoch = header["simulation"]["epoch"]
    events = []
    for line in lines[1:]:
        event = json.loads(line)
        if event["kind"] in COMPARED:
            event["t"] = round(event["t"] - epoch, 6)
            events.append(json.dumps(event, sort_keys=True))
    return header, events


def test_speed_max_records_what_speed_1000_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow_header, slow = simulate(tmp_path / "1000.jsonl", "1000")
    fast_header, fast = simulate(tmp_path / "max.jsonl", "max")
    assert len(fast) > 100 and any('"migration.finished"' in e for e in fast)
    assert fast == slow
    assert fast_header["simulation"]["speed"] == "max"  # type: ignore[index]
    assert slow_header["simulation"]["speed"] == 1000.0  # type: ignore[index]


def test_the_report_of_a_simulated_run_names_its_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, _ = simulate(tmp_path / "run.jsonl", "max")
    model = header["simulation"]["model"]  # type: ignore[index]
    assert model["key"] == "xen-v1"
    keys = {i["key"]: i["source"] for i in model["inputs"]}
    assert set(keys) >= {"xen_version", "zero_fraction", "dirtier_mib_s", "send_cores_per_mbit"}
    out = capsys.readouterr().out
    text = render_text(load_report(tmp_path / "run.jsonl"))
    first = text.splitlines()[:8]
    assert any(line.startswith("model: Xen 4.4 pre-copy") for line in first)
    assert "xc_domain_save.c" in text and "dirtier_mib_s 250.0 MiB/s" in text.replace("\n  ", " ")
    assert "model: Xen 4.4" in out  # the run's own report, at its top
