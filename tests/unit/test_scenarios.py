"""Scenarios: the built-ins hold the study's parameters; files load with located errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from backend.config import load_lab
from backend.experiments import scenarios as scenarios_module
from backend.experiments.scenarios import (
    BUILTIN_IDS,
    ENTRY_CLASSES,
    QUICK_FACTOR,
    Scenario,
    builtin_scenarios,
    describe_timeline,
    find_scenario,
    load_scenario,
    parse_scenario,
)
from backend.probes import (
    PROBES,
    dbench_command,
    ping_command,
    sysbench_cpu_command,
    sysbench_memory_command,
)
from backend.probes.build import REBUILD_SCRIPT
from backend.tomlfile import ConfigError
from tui.commands import scenarios as scenarios_command
from tui.commands.common import BadInput

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = Path(scenarios_module.__file__).parent / "scenarios"

MINIMAL = """\
id = "mine"
title = "my own"

[timeline]
baseline_s = 10
after_s = 5

[[probes]]
kind = "ping"
where = "storage"
"""


# --------------------------------------------------------------------------- built-ins


def test_the_built_in_ids_are_the_cli_contract() -> None:
    assert BUILTIN_IDS == (
        "disk-iscsi-vs-local",
        "migrate-dbench",
        "migrate-sysbench-cpu",
        "migrate-sysbench-memory",
        "migrate-ping",
        "migrate-combined",
        "migrate-kernel-compile",
        "migrate-ram-dirtier",
    )
    assert list(builtin_scenarios()) == list(BUILTIN_IDS)
    assert sorted(p.stem for p in SHIPPED.glob("*.toml")) == sorted(BUILTIN_IDS)
    for scenario in builtin_scenarios().values():
        assert scenario.source == "built-in" and scenario.study_test and scenario.study_result


def test_entry_kinds_are_the_probe_kinds() -> None:
    assert sorted(ENTRY_CLASSES) == sorted(PROBES)


def kinds(scenario: Scenario) -> list[str]:
    return sorted(entry.kind for entry in scenario.entries)


def test_test_1_dbench_with_the_study_timeline() -> None:
    s = builtin_scenarios()["migrate-dbench"]
    assert kinds(s) == ["dbench"] and s.study_test == "test 1"
    (dbench,) = s.workloads
    assert dbench.place == "guest"
    assert dbench.options.clients == 2  # type: ignore[union-attr]
    assert (s.timeline.warmup_s, s.timeline.baseline_s) == (80, 60)
    assert s.migrations == 1 and s.sequence == "together"
    # dbench warms up for a fifth of its run: 80 s is -t 400.
    assert dbench.options.argv(400) == dbench_command(2, time_s=400)  # type: ignore[call-arg]


def test_tests_2_and_3_sysbench_parameters() -> None:
    cpu = builtin_scenarios()["migrate-sysbench-cpu"]
    (workload,) = cpu.workloads
    assert workload.options.argv(5) == sysbench_cpu_command(  # type: ignore[call-arg]
        threads=20, max_prime=1000, time_s=5
    )
    assert "--threads=20" in workload.options.argv(5)  # type: ignore[call-arg]
    assert cpu.timeline.baseline_s == 60 and not cpu.probes
    memory = builtin_scenarios()["migrate-sysbench-memory"]
    (workload,) = memory.workloads
    argv = workload.options.argv(5)  # type: ignore[call-arg]
    assert argv == sysbench_memory_command(threads=20, oper="write", access_mode="seq", time_s=5)
    assert "--memory-oper=write" in argv and "--memory-access-mode=seq" in argv


def test_tests_4_to_7_ping_the_guest() -> None:
    builtins = builtin_scenarios()
    assert kinds(builtins["migrate-ping"]) == ["ping"]
    assert kinds(builtins["migrate-combined"]) == [
        "dbench", "ping", "sysbench-cpu", "sysbench-memory",
    ]  # fmt: skip
    assert kinds(builtins["migrate-kernel-compile"]) == ["build", "ping"]
    assert kinds(builtins["migrate-ram-dirtier"]) == ["dirtier", "ping"]
    for name in ("migrate-ping", "migrate-combined", "migrate-kernel-compile"):
        (ping,) = builtins[name].probes
        assert ping.where == "storage"
        assert ping.options.argv("198.18.0.2") == ping_command(  # type: ignore[call-arg]
            "198.18.0.2", interval_s=0.2
        )
    build = builtins["migrate-kernel-compile"].workloads[0]
    assert build.options.repeat and build.options.jobs == 2  # type: ignore[union-attr]
    # A kernel tree first (the study's lab), then the sandbox guest's real project.
    trees = build.options.directories  # type: ignore[union-attr]
    assert trees == ["/usr/src/linux", "/mnt/disk/build/lua-5.2"]
    argv = build.options.argv()  # type: ignore[call-arg]
    assert argv[-2:] == ["make", "-j2"] and "/usr/src/linux" in argv
    assert argv[:5] == ["sh", "-c", REBUILD_SCRIPT, "miglab-rebuild", "/usr/src/linux"]


def test_analysis_1_compares_disks_one_benchmark_at_a_time() -> None:
    s = builtin_scenarios()["disk-iscsi-vs-local"]
    assert s.compare_disks == ["local", "iscsi"] and s.migrations == 0
    assert s.sequence == "one-at-a-time"
    assert kinds(s) == ["dbench", "ping", "sysbench-cpu", "sysbench-memory"]


def test_built_ins_fit_the_reference_lab() -> None:
    lab = load_lab(ROOT / "lab.toml")
    for scenario in builtin_scenarios().values():
        assert scenario.lab_problems(lab) == []
    ping = builtin_scenarios()["migrate-ping"].probes[0]
    assert builtin_scenarios()["migrate-ping"].host_of(ping, lab) == "iscsiserver"


# --------------------------------------------------------------------------- quick


def test_quick_scales_the_timeline_and_keeps_floors() -> None:
    dbench = builtin_scenarios()["migrate-dbench"]
    quick = dbench.quick()
    assert QUICK_FACTOR == 0.1
    assert (quick.timeline.warmup_s, quick.timeline.baseline_s, quick.timeline.after_s) == (
        8.0,
        6.0,
        24.0,
    )
    assert quick.timeline.between_s == 0  # absent parts stay absent
    assert quick.workloads == dbench.workloads and quick.source == "built-in"
    tiny = dbench.quick(0.001)
    assert (tiny.timeline.warmup_s, tiny.timeline.baseline_s, tiny.timeline.after_s) == (
        2.0,
        5.0,
        5.0,
    )
    assert dbench.timeline.warmup_s == 80  # the original is untouched
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            dbench.quick(bad)


def test_timeline_description() -> None:
    s = builtin_scenarios()["migrate-dbench"]
    assert describe_timeline(s.timeline, 1) == "80 s warm-up, 60 s baseline, migrate, 240 s after"
    trip = parse_scenario(MINIMAL.replace("after_s = 5", "after_s = 5\nbetween_s = 30"))
    assert describe_timeline(trip.timeline, 2) == (
        "10 s baseline, migrate, 30 s between, migrate, 5 s after"
    )


# --------------------------------------------------------------------------- user files


def test_a_user_file_loads_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL)
    scenario = find_scenario(str(path))
    assert scenario.id == "mine" and scenario.source == str(path)
    assert scenario.repetitions == 1 and scenario.migrations == 1
    assert scenario.probes[0].options.interval_s == 0.2  # type: ignore[union-attr]


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, "my.toml")
    return [(e.line, e.key, e.message) for e in caught.value.errors]


@pytest.mark.parametrize(
    ("change", "line", "key", "needle"),
    [
        ('where = "storage"', 8, "probes[0].where", "required"),  # at its [[probes]]
        ('kind = "ping"', 9, "probes[0].kind", "unknown kind 'pong'"),
        ("after_s = 5", 6, "timeline.afterr_s", "did you mean 'after_s'"),
        ('title = "my own"', 2, "title", "one line only"),
        ('id = "mine"', 1, "id", "lower case"),
        ("baseline_s = 10", 5, "timeline.baseline_s", "greater than 0"),
    ],
)
def test_errors_name_line_and_key(change: str, line: int, key: str, needle: str) -> None:
    replacement = {
        'where = "storage"': "",
        'kind = "ping"': 'kind = "pong"',
        "after_s = 5": "afterr_s = 5",
        'title = "my own"': 'title = "two\\nlines"',
        'id = "mine"': 'id = "Mine Own"',
        "baseline_s = 10": "baseline_s = 0",
    }[change]
    found = problems(MINIMAL.replace(change, replacement))
    assert any(p[0] == line and p[1] == key and needle in p[2] for p in found), found


def test_option_errors_come_from_the_builders() -> None:
    workload = '\n[[workloads]]\nkind = "sysbench-memory"\noptions = { threads = 2, %s }\n'
    assert problems(MINIMAL + workload % 'block_size = "lots"') == [
        (14, "workloads[0].options", "block_size must look like 1K, 4M or 100T, got 'lots'")
    ]
    (unknown,) = problems(MINIMAL + workload % 'colour = "red"')
    assert unknown[:2] == (14, "workloads[0].options.colour")
    assert unknown[2].startswith("unknown key; expected one of threads, oper, access_mode")


def test_cross_checks_are_located() -> None:
    text = MINIMAL + '\n[[workloads]]\nkind = "dbench"\nwhere = "xen1"\n'
    assert (14, "workloads[0].where", "workloads run in the guest; make it a [[probes]] entry "
            "to run it on 'xen1'") in problems(text)  # fmt: skip
    disks = MINIMAL.replace('title = "my own"', 'title = "x"\ncompare_disks = ["local"]')
    found = problems(disks)
    assert any(p[1] == "compare_disks" and "two different disks" in p[2] for p in found)
    assert any(p[1] == "compare_disks" and "migrations = 0" in p[2] for p in found)
    empty = MINIMAL.split("[[probes]]")[0]
    assert any("nothing to run" in p[2] for p in problems(empty))


def test_cross_checks_hold_without_the_loader() -> None:
    data = {"id": "x", "title": "x", "timeline": {"baseline_s": 1.0}, "probes": [{"kind": "ping"}]}
    with pytest.raises(ValueError, match="where the probe runs"):
        Scenario.model_validate(data)


def test_types_are_strict_and_syntax_errors_have_a_line() -> None:
    found = problems(MINIMAL.replace("baseline_s = 10", 'baseline_s = "10"'))
    assert found == [(5, "timeline.baseline_s", "expected a number, got '10'")]
    (syntax,) = problems(MINIMAL + "oops = [\n")
    assert syntax[0] is not None and "TOML syntax error" in syntax[2]


def test_missing_and_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="did you mean 'migrate-ping'"):
        find_scenario("migrate-pings")
    (tmp_path / "bin.toml").write_bytes(b'id = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_scenario(tmp_path / "bin.toml")


def test_where_must_name_a_lab_host() -> None:
    lab = load_lab(ROOT / "lab.toml")
    scenario = parse_scenario(MINIMAL.replace('where = "storage"', 'where = "xen9"'))
    (problem,) = scenario.lab_problems(lab)
    assert "no host 'xen9'" in problem and "xenserver1" in problem
    with pytest.raises(KeyError):
        scenario.host_of(scenario.probes[0], lab)


# --------------------------------------------------------------------------- CLI


def cli(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="miglab")
    scenarios_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["scenarios", *args])


def test_cli_lists_one_line_each_within_80_columns(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli()
    assert args.handler(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(BUILTIN_IDS)
    assert all(len(line) <= 80 for line in lines)
    assert "ping alone" in lines[4]


def test_cli_json_and_quick(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli("--json", "--quick", "migrate-dbench")
    assert args.handler(args) == 0
    (dumped,) = json.loads(capsys.readouterr().out)
    assert dumped["id"] == "migrate-dbench" and dumped["timeline"]["warmup_s"] == 8.0
    assert dumped["workloads"][0]["options"]["clients"] == 2


def test_cli_checks_a_user_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace('kind = "ping"', 'kind = "pong"'))
    args = cli(str(bad))
    with pytest.raises(BadInput, match=r"bad\.toml:9: probes\[0\]\.kind: unknown kind 'pong'"):
        args.handler(args)
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    args = cli("-v", str(good))
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("mine  my own") and "10 s baseline" in out and str(good) in out
