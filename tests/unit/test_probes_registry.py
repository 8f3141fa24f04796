"""The probe registry, and what holds for every probe and every capture."""

from __future__ import annotations

import json
import re

import pytest

from backend.events import Sample, parse_event
from backend.probes import PROBES, new_parser, parse_lines
from tests.conftest import DATA

CAPTURES = DATA / "probes"

# Which parser reads which capture (by file-name prefix).
KIND_OF_PREFIX = {
    "ping-": "ping",
    "sysbench-cpu-": "sysbench-cpu",
    "sysbench-memory-": "sysbench-memory",
    "dbench-": "dbench",
    "build-": "build",
    "dirtier-": "dirtier",
}


def captures() -> list[str]:
    return sorted(p.name for p in CAPTURES.glob("*.txt") if not p.name.endswith(".stderr.txt"))


def kind_of(name: str) -> str:
    return next(kind for prefix, kind in KIND_OF_PREFIX.items() if name.startswith(prefix))


def test_registry_kinds() -> None:
    assert sorted(PROBES) == [
        "build", "dbench", "dirtier", "ping", "sysbench-cpu", "sysbench-memory",
    ]  # fmt: skip
    for kind, spec in PROBES.items():
        assert spec.kind == kind and spec.description and spec.units


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown probe kind 'iperf'"):
        new_parser("iperf", "guest")


@pytest.mark.parametrize("name", captures())
def test_every_capture_through_the_registry(name: str) -> None:
    kind = kind_of(name)
    parser = new_parser(kind, "guest", lambda: 1000.0)
    samples = parse_lines(parser, (CAPTURES / name).read_text().splitlines(keepends=True))
    for sample in samples:
        assert sample.probe == kind and sample.host == "guest"
        assert set(sample.unit) <= set(PROBES[kind].units)
        assert set(sample.unit) <= set(sample.values)
        # Samples go to the JSON Lines session log and must come back the same.
        line = json.dumps(sample.model_dump(mode="json"), allow_nan=False)
        assert parse_event(json.loads(line)) == sample
    assert parser.finish() == []  # finish is final


def test_readme_lists_every_capture() -> None:
    readme = (CAPTURES / "README.md").read_text()
    listed = set(re.findall(r"`([\w.-]+\.txt)`", readme))
    on_disk = {p.name for p in CAPTURES.glob("*.txt")}
    assert listed == on_disk


def test_samples_are_frozen_events() -> None:
    [sample] = new_parser("ping", "h").feed("[1.0] 64 bytes from h: icmp_seq=1 ttl=64 time=1 ms")
    assert isinstance(sample, Sample) and sample.kind == "sample"
