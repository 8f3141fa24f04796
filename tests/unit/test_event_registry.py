"""Every event kind is known to the log reader from one place: backend.events.KINDS.

A log must read the same whatever else was imported, so the reader's table is an
explicit one in backend/events.py, and every event class of the project lives there.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import backend
import tui
from backend import events
from backend.events import (
    EVENT_CLASSES,
    KINDS,
    DiskStarted,
    Event,
    ExperimentFinished,
    ExperimentStarted,
    RepetitionStarted,
    StorageUnexported,
    UnknownEvent,
    parse_event,
)
from backend.session import HEADER_KIND

ROOT = Path(__file__).resolve().parents[2]


def _all_subclasses(cls: type[Event]) -> set[type[Event]]:
    found: set[type[Event]] = set()
    pending = list(cls.__subclasses__())
    while pending:
        sub = pending.pop()
        found.add(sub)
        pending.extend(sub.__subclasses__())
    return found


def _import_everything() -> None:
    for package in (backend, tui):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)


def test_every_event_class_of_the_project_is_in_the_readers_table() -> None:
    _import_everything()
    ours = {
        cls
        for cls in _all_subclasses(Event)
        if cls.__module__.startswith(("backend.", "tui.")) and cls is not UnknownEvent
    }
    assert ours, "no event classes found: the walk imported nothing"
    missing = sorted(c.__qualname__ for c in ours if c not in EVENT_CLASSES)
    assert missing == [], f"event classes the reader does not know: {missing}"
    elsewhere = sorted(
        f"{c.__module__}.{c.__qualname__}" for c in ours if c.__module__ != events.__name__
    )
    assert elsewhere == [], f"event classes defined outside backend/events.py: {elsewhere}"


def test_the_table_maps_each_kind_to_its_class() -> None:
    assert len(KINDS) == len(EVENT_CLASSES)
    for kind, cls in KINDS.items():
        assert cls.model_fields["kind"].default == kind
    assert "experiment.repetition" in KINDS and "storage.unexported" in KINDS


def test_an_unknown_kind_is_kept_as_unknown() -> None:
    event = parse_event({"kind": "from.the.future", "t": 1.0, "x": 2})
    assert type(event) is UnknownEvent
    assert event.model_dump()["x"] == 2


# Runs in a fresh interpreter: only the reader is imported, then it says what it got.
_READ_ONLY_SESSION = """
import json, sys
from backend.session import read_session
session = read_session(sys.argv[1])
loaded = sorted(m for m in sys.modules if m.startswith("backend.experiments")
                or m.startswith("backend.drivers."))
print(json.dumps({"classes": [type(e).__name__ for e in session.events], "loaded": loaded}))
"""


def test_a_log_reads_the_same_with_only_the_session_reader_imported(tmp_path: Path) -> None:
    written: list[Event] = [
        ExperimentStarted(
            t=1.0,
            scenario="migrate-ping",
            title="ping",
            repetitions=1,
            migrations=1,
            sequence="one-way",
            timeline={"baseline": 10.0},
        ),
        RepetitionStarted(t=2.0, number=1, of=1),
        DiskStarted(t=3.0, disk="iscsi"),
        StorageUnexported(t=4.0, host="storage", iqn="iqn.2026-01.lab:disk", forced=True),
        ExperimentFinished(t=5.0, scenario="migrate-ping", status="ok"),
    ]
    log = tmp_path / "session.jsonl"
    lines = [{"kind": HEADER_KIND, "t": 0.0, "schema": events.SCHEMA_VERSION}]
    lines += [e.model_dump(mode="json") for e in written]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")

    done = subprocess.run(
        [sys.executable, "-c", _READ_ONLY_SESSION, str(log)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["loaded"] == [], "the reader pulled in the modules that used to define events"
    assert answer["classes"] == [type(e).__name__ for e in written]


def test_no_module_finds_event_kinds_by_scanning_subclasses() -> None:
    """events.KINDS is the one table: a second, scanned one would depend on imports."""
    scanners = [
        str(path.relative_to(ROOT))
        for top in ("backend", "tui")
        for path in sorted((ROOT / top).rglob("*.py"))
        if "__subclasses__" in path.read_text(encoding="utf-8")
    ]
    assert scanners == []
