"""Every number in lab.toml, a scenario file and on the command line has a range.

An unbounded value is never what the user meant and breaks something far from the
file: ``baseline_s = inf`` overflowed deep in the runner, ``1e300`` ran forever,
``memory_mb = 2^63-1`` made the simulated migration endless, ``--repeat 1000000``
went past what a scenario file may say. Each bad value must be refused where it is
written, as ``file:line: key: message`` (exit 2 from the CLI), never as a traceback.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from backend.config import LabConfig, lab_json_schema, load_lab
from backend.experiments.scenarios import (
    MAX_REPETITIONS,
    Scenario,
    load_scenario,
)
from backend.tomlfile import ConfigError
from tui.cli import _parser

ROOT = Path(__file__).resolve().parents[2]

LAB = """\
[lab]
name = "t"
link_mbit = 100

[hosts.a]
address = "10.0.0.1"

[hosts.b]
address = "10.0.0.2"

[hosts.c]
address = "10.0.0.3"

[storage]
host = "a"
driver = "tgt"
iqn = "iqn.2024-01.org.example:disk"
device = "/dev/vdb"
portal = "10.0.0.1"

[hypervisor]
driver = "qemu"
hosts = ["b", "c"]

[guest]
name = "g"
address = "10.0.0.50"
vcpus = 1
memory_mb = 256

[guest.qemu]
kernel = "/var/lib/miglab/vmlinuz"
"""

SCENARIO = """\
id = "mine"
title = "my own"

[timeline]
baseline_s = 10
after_s = 5

[[probes]]
kind = "ping"
where = "storage"

[[workloads]]
kind = "sysbench-cpu"

[[workloads]]
kind = "sysbench-memory"

[[workloads]]
kind = "dbench"

[[workloads]]
kind = "build"

[[workloads]]
kind = "dirtier"
"""

HUGE = str(2**63 - 1)
WAY_TOO_BIG = "1" + "0" * 400  # a TOML integer far past 64 bits (tomllib reads it)


def with_key(text: str, header: str, key: str, value: str) -> tuple[str, int]:
    """``text`` with ``key = value`` in the table ``[header]`` (or array table entry
    ``header``), replacing the key if the table has it; and the line it is on."""
    lines = text.splitlines()
    start = lines.index(header)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(start + 1, end):
        if lines[i].startswith(f"{key} ="):
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n", i + 1
    lines.insert(start + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n", start + 2


# --------------------------------------------------------------------------- lab.toml

# (table header, key, dotted key path, bad values). inf/nan/negative/huge for each kind.
FLOAT_BAD = ["inf", "-inf", "nan", "-1.0", "1e300"]
INT_BAD = ["-1", HUGE, WAY_TOO_BIG]
LAB_CASES: list[tuple[str, str, str, list[str]]] = [
    ("[lab]", "link_mbit", "lab.link_mbit", ["0", *INT_BAD, "1e8", "inf"]),
    ("[hosts.a]", "port", "hosts.a.port", ["0", "65536", *INT_BAD]),
    ("[hosts.a]", "connect_timeout_s", "hosts.a.connect_timeout_s", ["0", *FLOAT_BAD]),
    ("[hosts.a]", "keepalive_s", "hosts.a.keepalive_s", ["1e-9", "0.01", *FLOAT_BAD]),
    ("[storage]", "lun", "storage.lun", ["0", "16384", *INT_BAD]),
    ("[storage]", "tgt_control_port", "storage.tgt_control_port", ["32768", *INT_BAD]),
    (
        "[hypervisor]",
        "migrate_bandwidth_mbit",
        "hypervisor.migrate_bandwidth_mbit",
        ["0", *INT_BAD],
    ),
    ("[hypervisor]", "downtime_limit_ms", "hypervisor.downtime_limit_ms", ["0", *INT_BAD]),
    (
        "[hypervisor]",
        "convergence_after_syncs",
        "hypervisor.convergence_after_syncs",
        ["0", "1001", *INT_BAD],
    ),
    ("[guest]", "vcpus", "guest.vcpus", ["0", "4097", "100000000", "1e8", *INT_BAD]),
    ("[guest]", "memory_mb", "guest.memory_mb", ["15", "16777217", *INT_BAD, "inf"]),
    ("[guest]", "port", "guest.port", ["0", "65536", *INT_BAD]),
    ("[guest.qemu]", "migration_port", "guest.qemu.migration_port", ["0", "65536", *INT_BAD]),
]


@pytest.mark.parametrize(
    ("header", "key", "dotted", "value"),
    [(h, k, d, v) for h, k, d, values in LAB_CASES for v in values],
)
def test_lab_numbers_out_of_range_are_refused_at_their_line(
    tmp_path: Path, header: str, key: str, dotted: str, value: str
) -> None:
    text, line = with_key(LAB, header, key, value)
    path = tmp_path / "lab.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_lab(path)
    errors = caught.value.errors
    assert [(e.line, e.key) for e in errors] == [(line, dotted)], str(caught.value)
    message = str(errors[0])
    assert message.startswith(f"{path}:{line}: {dotted}: ")
    assert len(message) < 200  # a 400-digit value is not printed whole


@pytest.mark.parametrize(
    ("header", "key", "value"),
    [
        ("[lab]", "link_mbit", "1000000"),
        ("[hosts.a]", "keepalive_s", "0"),
        ("[hosts.a]", "keepalive_s", "0.1"),
        ("[hosts.a]", "connect_timeout_s", "3600"),
        ("[storage]", "lun", "16383"),
        ("[hypervisor]", "downtime_limit_ms", "2000000"),
        ("[guest]", "vcpus", "4096"),
        ("[guest]", "memory_mb", "16777216"),
        ("[guest]", "memory_mb", "16"),
    ],
)
def test_lab_numbers_at_the_ends_of_their_ranges_load(
    tmp_path: Path, header: str, key: str, value: str
) -> None:
    text, _ = with_key(LAB, header, key, value)
    path = tmp_path / "lab.toml"
    path.write_text(text)
    load_lab(path)


def numeric_fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[tuple[str, Any]]:
    """(Model.field, FieldInfo) for every int/float field reachable from ``model``."""
    if model in seen:
        return []
    seen.add(model)
    found: list[tuple[str, Any]] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = getattr(annotation, "__args__", ())
        kinds = {annotation, *args}
        if kinds & {int, float}:
            found.append((f"{model.__name__}.{name}", info))
        for kind in kinds:
            for inner in (kind, *getattr(kind, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    found.extend(numeric_fields(inner, seen))
    return found


def bounds(info: Any) -> tuple[float | None, float | None]:
    low = high = None
    for item in info.metadata:
        for attr in ("ge", "gt"):
            if getattr(item, attr, None) is not None:
                low = getattr(item, attr)
        for attr in ("le", "lt"):
            if getattr(item, attr, None) is not None:
                high = getattr(item, attr)
    return low, high


def test_every_number_in_every_model_has_both_ends_and_no_inf_or_nan() -> None:
    from backend.experiments.scenarios import ENTRY_CLASSES
    from backend.probes import PROBES

    models: list[type[BaseModel]] = [
        LabConfig,
        Scenario,
        *ENTRY_CLASSES.values(),
        *(probe.options for probe in PROBES.values()),
    ]
    seen: set[type[BaseModel]] = set()
    fields = [f for model in models for f in numeric_fields(model, seen)]
    assert len(fields) >= 25  # the walk found them (lab.toml 14, scenarios 11+)
    unbounded = [name for name, info in fields if None in bounds(info)]
    assert unbounded == []
    for model in seen:
        assert model.model_config.get("allow_inf_nan") is False, model.__name__


def test_the_json_schema_carries_every_range() -> None:
    schema = lab_json_schema()
    defs = schema["$defs"]
    ranged = {
        ("Lab", "link_mbit"): (1, 1_000_000),
        ("Host", "connect_timeout_s"): (None, 3600),
        ("Host", "keepalive_s"): (0, 3600),
        ("Storage", "lun"): (1, 16383),
        ("Hypervisor", "downtime_limit_ms"): (1, 2_000_000),
        ("Hypervisor", "convergence_after_syncs"): (1, 1000),
        ("Guest", "vcpus"): (1, 4096),
        ("Guest", "memory_mb"): (16, 16_777_216),
    }
    for (model, field), (low, high) in ranged.items():
        prop = defs[model]["properties"][field]
        options = prop.get("anyOf", [prop])
        numbers = [o for o in options if o.get("type") in ("integer", "number")]
        assert numbers, (model, field, prop)
        assert numbers[0].get("maximum") == high, (model, field, prop)
        if low is not None:
            assert numbers[0].get("minimum") == low, (model, field, prop)


# --------------------------------------------------------------------------- scenarios

TIMELINE_BAD = ["inf", "nan", "-1", "1e300", "86401"]
SCENARIO_CASES: list[tuple[str, int, str, str, list[str]]] = [
    # (table header, which occurrence, key, dotted key, bad values)
    ("[timeline]", 0, "baseline_s", "timeline.baseline_s", ["0", *TIMELINE_BAD]),
    ("[timeline]", 0, "warmup_s", "timeline.warmup_s", TIMELINE_BAD),
    ("[timeline]", 0, "after_s", "timeline.after_s", TIMELINE_BAD),
    ("[timeline]", 0, "between_s", "timeline.between_s", TIMELINE_BAD),
    ("", 0, "repetitions", "repetitions", ["0", "1001", "1000000", HUGE]),
    ("", 0, "migrations", "migrations", ["-1", "21", HUGE]),
    ("[[probes]]", 0, "interval_s", "probes[0].options.interval_s", ["inf", "nan", "0", "1e300"]),
    ("[[probes]]", 0, "reply_timeout_s", "probes[0].options.reply_timeout_s", ["0", "601", HUGE]),
    ("[[workloads]]", 0, "threads", "workloads[0].options.threads", ["0", "1025", HUGE]),
    ("[[workloads]]", 0, "max_prime", "workloads[0].options.max_prime", ["0", "10000001", HUGE]),
    ("[[workloads]]", 1, "threads", "workloads[1].options.threads", ["0", "1025", HUGE]),
    (
        "[[workloads]]",
        1,
        "block_size",
        "workloads[1].options.block_size",
        ['"2G"', '"1025M"', f'"{HUGE}"'],
    ),
    (
        "[[workloads]]",
        1,
        "total_size",
        "workloads[1].options.total_size",
        ['"8388608T"', f'"{HUGE}K"', f'"{WAY_TOO_BIG}"'],
    ),
    ("[[workloads]]", 2, "clients", "workloads[2].options.clients", ["0", "1025", HUGE]),
    ("[[workloads]]", 3, "jobs", "workloads[3].options.jobs", ["0", "1025", HUGE]),
    ("[[workloads]]", 4, "size_mib", "workloads[4].options.size_mib", ["0", "16777217", HUGE]),
    ("[[workloads]]", 4, "size_pct", "workloads[4].options.size_pct", ["inf", "nan", "0", "101"]),
]


def scenario_with(header: str, occurrence: int, key: str, value: str) -> tuple[str, int]:
    lines = SCENARIO.splitlines()
    if not header:  # a top-level key: before the first table
        lines.insert(2, f"{key} = {value}")
        return "\n".join(lines) + "\n", 3
    if header == "[timeline]":
        text, line = with_key(SCENARIO, header, key, value)
        return text, line
    at = [i for i, line in enumerate(lines) if line == header][occurrence]
    # options go into an inline table after kind (and where)
    insert = at + 1
    while insert < len(lines) and lines[insert] and not lines[insert].startswith("["):
        insert += 1
    lines.insert(insert, f"options = {{ {key} = {value} }}")
    return "\n".join(lines) + "\n", insert + 1


@pytest.mark.parametrize(
    ("header", "occurrence", "key", "dotted", "value"),
    [(h, o, k, d, v) for h, o, k, d, values in SCENARIO_CASES for v in values],
)
def test_scenario_numbers_out_of_range_are_refused_at_their_line(
    tmp_path: Path, header: str, occurrence: int, key: str, dotted: str, value: str
) -> None:
    text, line = scenario_with(header, occurrence, key, value)
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    errors = caught.value.errors
    assert (line, dotted) in [(e.line, e.key) for e in errors], str(caught.value)
    for error in errors:
        assert str(error).startswith(f"{path}:")
        assert len(str(error)) < 240


def test_the_scenario_file_loads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    assert scenario.timeline.baseline_s == 10


def test_timeline_parts_at_their_maximum_load(tmp_path: Path) -> None:
    text = SCENARIO.replace("baseline_s = 10", "baseline_s = 86400\nwarmup_s = 86400")
    path = tmp_path / "s.toml"
    path.write_text(text)
    assert load_scenario(path).timeline.warmup_s == 86400


# --------------------------------------------------------------------------- the CLI

CLI_BAD: list[list[str]] = [
    ["run", "migrate-ping", "--sim", "--repeat", "0"],
    ["run", "migrate-ping", "--sim", "--repeat", str(MAX_REPETITIONS + 1)],
    ["run", "migrate-ping", "--sim", "--repeat", "1000000"],
    ["run", "migrate-ping", "--sim", "--repeat", "9" * 5000],
    ["run", "migrate-ping", "--sim", "--speed", "inf"],
    ["run", "migrate-ping", "--sim", "--speed", "nan"],
    ["run", "migrate-ping", "--sim", "--speed", "1e300"],
    ["run", "migrate-ping", "--sim", "--speed", "0"],
    ["run", "migrate-ping", "--sim", "--seed", "-1"],
    ["run", "migrate-ping", "--sim", "--seed", str(2**64)],
    ["demo", "--speed", "inf"],
    ["demo", "--seed", str(2**64)],
    ["sim", "serve", "--speed", "nan"],
    ["sim", "serve", "--seed", "-5"],
    ["replay", "x.jsonl", "--speed", "1e300"],
    ["replay", "x.jsonl", "--speed", "inf"],
    ["replay", "x.jsonl", "--speed", "-1"],
    ["import", "ping", "f", "-o", "x", "--start", "nan"],
    ["import", "ping", "f", "-o", "x", "--start", "inf"],
    ["import", "ping", "f", "-o", "x", "--start", "-1"],
    ["import", "ping", "f", "-o", "x", "--start", "1e300"],
    ["sandbox", "up", "--link-mbit", "0"],
    ["sandbox", "up", "--link-mbit", "1000001"],
    ["sandbox", "up", "--guest-mb", "16777217"],
]


@pytest.mark.parametrize("argv", CLI_BAD, ids=lambda a: " ".join(x[:12] for x in a))
def test_numeric_options_out_of_range_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        _parser().parse_args(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    option = argv[-2]
    assert f"argument {option}" in err
    assert len(err.splitlines()[-1]) < 300  # a 5000-digit value is not echoed whole


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "migrate-ping", "--sim", "--repeat", str(MAX_REPETITIONS)],
        ["run", "migrate-ping", "--sim", "--speed", "1000", "--seed", "0"],
        ["run", "migrate-ping", "--sim", "--seed", str(2**63 - 1)],
        ["replay", "x.jsonl", "--speed", "0"],
        ["replay", "x.jsonl", "--speed", "1000"],
        ["import", "ping", "f", "-o", "x", "--start", "1700000000.5"],
    ],
)
def test_numeric_options_in_range_parse(argv: list[str]) -> None:
    _parser().parse_args(argv)


def miglab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("scenario", ("baseline_s = 10", "baseline_s = inf")),
        ("scenario", ("baseline_s = 10", "baseline_s = 1e300")),
        ("lab", ("memory_mb = 256", f"memory_mb = {HUGE}")),
        ("lab", ("vcpus = 1", "vcpus = 100000000")),
        ("repeat", ("", "")),
    ],
    ids=["baseline-inf", "baseline-1e300", "memory-2^63", "vcpus-1e8", "repeat-1e6"],
)
def test_the_cli_refuses_unbounded_values_with_exit_2_and_no_traceback(
    tmp_path: Path, kind: str, change: tuple[str, str]
) -> None:
    scenario = tmp_path / "s.toml"
    lab = tmp_path / "lab.toml"
    scenario.write_text(SCENARIO.replace(*change) if kind == "scenario" else SCENARIO)
    lab.write_text(LAB.replace(*change) if kind == "lab" else LAB)
    repeat = ["--repeat", "1000000"] if kind == "repeat" else []
    done = miglab(
        "run", str(scenario), "--sim", "--lab", str(lab), "--dry-run", *repeat, cwd=tmp_path
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Error:" not in done.stderr.replace("error:", "")
    if kind == "scenario":
        assert re.search(rf"{re.escape(str(scenario))}:\d+: timeline\.baseline_s: ", done.stderr)
    elif kind == "lab":
        key = "memory_mb" if "memory" in change[1] else "vcpus"
        assert re.search(rf"{re.escape(str(lab))}:\d+: guest\.{key}: must be at most ", done.stderr)
    else:
        assert "--repeat" in done.stderr and str(MAX_REPETITIONS) in done.stderr
