"""`miglab campaign` on a lab reached over SSH (not --sim): a failed migration stops the
campaign at once and says so; run again, it redoes that run and keeps the failed log.

The lab is :class:`tests.support.loopback_lab.LoopbackLab`: real sshd, tgtd and ping on
loopback; xl and iscsiadm are the simulator's fakes on the hypervisor hosts' PATH.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.experiments.campaign import log_is_complete
from tests.support.loopback_lab import LoopbackLab
from tests.support.sshd import Sshd
from tui import cli

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

SCENARIO = """\
id = "ping-short"
title = "ping over a short timeline"
migrations = 1

[timeline]
baseline_s = 2
after_s = 2

[[probes]]
kind = "ping"
where = "storage"
options = { interval_s = 0.2 }
"""

CAMPAIGN = """\
name = "loop"
scenarios = ["ping-short.toml"]
repetitions = 2

[parameters.hypervisor]
migrate_bandwidth_mbit = [1000]
"""


@pytest.fixture(scope="module")
def loopback(sshd: Sshd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackLab]:
    lab = LoopbackLab.start(tmp_path_factory.mktemp("loopback"), sshd)
    try:
        yield lab
    finally:
        lab.stop()


def header(log: Path) -> dict[str, object]:
    first: dict[str, object] = json.loads(log.read_text(encoding="utf-8").splitlines()[0])
    return first


def test_a_failed_run_stops_the_campaign_and_is_redone_when_it_resumes(
    loopback: LoopbackLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ping-short.toml").write_text(SCENARIO)
    file = tmp_path / "loop.toml"
    file.write_text(CAMPAIGN)
    out = tmp_path / "out"
    argv = ["campaign", str(file), "--lab", str(loopback.lab_file), "--out", str(out)]
    group = out / "ping-short_migrate_bandwidth_mbit-1000"

    loopback.set_xl("xen1", fail_migrate="target")
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 1
    printed = capsys.readouterr()
    assert "[1/2] ping-short migrate_bandwidth_mbit=1000 rep 1 ..." in printed.out
    assert "[2/2]" not in printed.out  # stopped at once
    assert "migration 1 from xen1 to xen2 failed" in printed.err
    assert "campaign stopped at run 1 (ping-short migrate_bandwidth_mbit=1000 rep 1)" in (
        printed.err
    )
    failed = group / "r1.jsonl"
    assert json.loads(failed.read_text().splitlines()[-1])["status"] == "failed"
    assert loopback.domains("xen1") == ["guest"]  # the guest stayed where it was

    loopback.set_xl("xen1", fail_migrate=None)
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 0
    printed = capsys.readouterr()
    assert "2 runs (1 scenario x 1 group x 2 repetitions)" in printed.out
    assert "0 done, 2 to run" in printed.out
    assert f"kept the incomplete log as {group / 'r1.jsonl.incomplete-1'}" in printed.out
    assert "2 done, 0 left" in printed.out
    kept = group / "r1.jsonl.incomplete-1"
    assert json.loads(kept.read_text().splitlines()[-1])["status"] == "failed"
    logs = [group / "r1.jsonl", group / "r2.jsonl"]
    assert all(log_is_complete(log) for log in logs)
    for number, log in enumerate(logs, start=1):
        campaign = header(log)["campaign"]
        assert isinstance(campaign, dict)
        assert campaign["run"] == f"ping-short_migrate_bandwidth_mbit-1000/r{number}"
        assert campaign["parameters"] == {"hypervisor.migrate_bandwidth_mbit": 1000}
        lab = header(log)["lab"]
        assert isinstance(lab, dict) and lab["hypervisor"]["migrate_bandwidth_mbit"] == 1000
