"""Scenarios: what an experiment runs, where, and on which timeline, as data.

A scenario is a TOML file. The built-ins (one per test of the 2009 study, see
``/work/shared/REFERENCE.md``) ship in ``backend/experiments/scenarios/``; a user
file is accepted by path anywhere a scenario id is. Example::

    id = "migrate-sysbench-cpu"
    title = "sysbench cpu, primes to 1000, 20 threads"
    study_test = "test 2"
    migrations = 1                 # 2 is a round trip
    repetitions = 1

    [timeline]
    warmup_s = 0                   # workloads run, nothing is measured yet
    baseline_s = 60                # measured before the migration starts
    after_s = 120                  # measured after it ends
    between_s = 60                 # between the two legs of a round trip

    [[workloads]]                  # in the guest, started at the warm-up
    kind = "sysbench-cpu"
    options = { threads = 20, max_prime = 1000 }

    [[probes]]                     # anywhere: "console", "storage", "guest" or a host name
    kind = "ping"
    where = "storage"
    options = { interval_s = 0.2 }

``kind`` is a probe kind of :data:`backend.probes.PROBES`; ``options`` are that
probe's options model (``Probe.options``, in its module of :mod:`backend.probes`),
checked when the file is loaded by the command builders themselves. What only a
run knows (the guest's address, how long a tool runs) the runner gives the probe
(``entry.probe.argv(entry.options, run)``). The entry classes are made from the
registry, so a new probe kind needs no line here.

``sequence = "one-at-a-time"`` runs every probe and workload alone, one after
another, each in its own warm-up + baseline stage (analysis 1 of the study
measured one benchmark at a time). ``compare_disks = ["local", "iscsi"]`` runs
the whole scenario once per disk the guest runs from, with no migration.
A ``[simulation]`` table sets the simulated lab's model inputs for this scenario (the
keys of lab.toml's ``[simulation]``, which it overrides; a real run ignores it).

Errors name the file, line and key (``ConfigError`` from :mod:`backend.tomlfile`).
Loading reads files: it blocks, so the console calls it in a thread.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
import types
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from backend.config import LabConfig, Simulation
from backend.inputs import SCENARIO_MAX_BYTES
from backend.probes import PROBES, AnyProbe, Options
from backend.tomlfile import (
    ConfigError,
    ConfigErrors,
    KeyLines,
    describe_error,
    did_you_mean,
    dotted_key,
    load_toml_file,
    toml_syntax_error,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "BUILTIN_IDS",
    "ENTRY_CLASSES",
    "MAX_PART_S",
    "MAX_REPETITIONS",
    "QUICK_FACTOR",
    "Entry",
    "Scenario",
    "Timeline",
    "builtin_scenarios",
    "describe_timeline",
    "find_scenario",
    "load_scenario",
    "parse_scenario",
]

BUILTIN_IDS: tuple[str, ...] = (
    "disk-iscsi-vs-local",
    "migrate-dbench",
    "migrate-sysbench-cpu",
    "migrate-sysbench-memory",
    "migrate-ping",
    "migrate-combined",
    "migrate-kernel-compile",
    "migrate-ram-dirtier",
)
"""The built-in scenario ids, in the study's order (part of the CLI contract)."""

# Ranges of the numbers in a scenario (and of the CLI options that override them): a
# value outside is a typo or a unit mistake, and an unbounded one (inf, 1e300) makes a
# run overflow or never end. They are in the JSON Schema too.
MAX_PART_S = 86400.0
"""One day: the longest warm-up, baseline, after or between part of a timeline."""
MAX_MIGRATIONS = 20
MAX_REPETITIONS = 1000
"""The most repetitions a scenario file, or ``miglab run --repeat``, may ask for."""

QUICK_FACTOR = 0.1
"""How much ``--quick`` shortens a scenario's timeline (tests and demos)."""

# Floors for a quick timeline: a mean needs a few 1-second samples, and dbench's
# own warm-up is a fifth of its run, so it needs a few seconds too.
_QUICK_MIN_S = {"warmup_s": 2.0, "baseline_s": 5.0, "after_s": 5.0, "between_s": 3.0}

WHERE_FIXED = ("console", "storage", "guest")
_WHERE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_ID = re.compile(r"[a-z0-9][a-z0-9-]*")


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


class _Model(BaseModel):
    # As lab.toml: unknown keys are errors, TOML types are taken as they are, and a
    # loaded scenario is shared, so nobody edits it.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
    )


# --------------------------------------------------------------------------- entries


class _Entry(_Model):
    """One probe or workload: ``kind``, ``where`` and that kind's ``options``. Each
    probe kind of :data:`backend.probes.PROBES` has its subclass (:data:`ENTRY_CLASSES`),
    whose ``options`` is that probe's options model."""

    where: str | None = None
    """Where it runs: "console" (this machine), "storage" (the lab's storage host),
    "guest", or the name of a host in lab.toml. Probes must say; workloads run in
    the guest and must not."""

    kind: str
    options: Options

    @field_validator("where")
    @classmethod
    def _where(cls, value: str | None) -> str | None:
        if value is not None and not _WHERE.fullmatch(value):
            raise _error(
                "where",
                f"{value!r} is not console, storage, guest or a host name "
                "(letters, digits, '-' and '_')",
            )
        return value

    @property
    def place(self) -> str:
        """Where it runs, "guest" when not given (workloads)."""
        return self.where or "guest"

    @property
    def probe(self) -> AnyProbe:
        """The probe this entry runs."""
        return PROBES[self.kind]


def _entry_class(probe: AnyProbe) -> type[_Entry]:
    name = "".join(part.capitalize() for part in re.split(r"[-_]", probe.kind)) + "Entry"
    fields: dict[str, Any] = {
        "kind": (Literal[probe.kind], ...),
        "options": (probe.options, Field(default_factory=probe.options)),
    }
    return create_model(name, __base__=_Entry, __module__=__name__, **fields)


_schema: tuple[tuple[tuple[str, AnyProbe], ...], dict[str, type[_Entry]], TypeAdapter[Any]] | None
_schema = None


def _entry_schema() -> tuple[dict[str, type[_Entry]], TypeAdapter[Any]]:
    """The entry classes of the probes in the registry, and their tagged union."""
    global _schema
    key = tuple(PROBES.items())
    if _schema is None or _schema[0] != key:
        classes = {kind: _entry_class(probe) for kind, probe in key}
        members: Any = Union[tuple(classes.values())]  # noqa: UP007 - made at run time
        union: Any = Annotated[members, Field(discriminator="kind")]
        _schema = (key, classes, TypeAdapter(union))
    return _schema[1], _schema[2]


class _EntryClasses(Mapping[str, type[_Entry]]):
    """Entry class by kind, as the probe registry has them now."""

    def __getitem__(self, kind: str) -> type[_Entry]:
        return _entry_schema()[0][kind]

    def __iter__(self) -> Iterator[str]:
        return iter(_entry_schema()[0])

    def __len__(self) -> int:
        return len(_entry_schema()[0])


ENTRY_CLASSES: Mapping[str, type[_Entry]] = _EntryClasses()
"""Entry class by kind: the kinds of :data:`backend.probes.PROBES` (a test holds them equal)."""


def _validate_entry(data: Any) -> _Entry:
    entry: _Entry = _entry_schema()[1].validate_python(data)
    return entry


if TYPE_CHECKING:
    Entry: TypeAlias = _Entry
else:
    # Validated by the probe registry's union when a scenario loads, so that the kinds
    # are the registry's: a new probe needs no line here.
    Entry = Annotated[Any, PlainValidator(_validate_entry)]
"""One probe or workload: ``kind``, ``where`` and that kind's ``options``."""


# --------------------------------------------------------------------------- scenario


class Timeline(_Model):
    """How long each part of a run lasts, in seconds."""

    warmup_s: float = Field(default=0.0, ge=0, le=MAX_PART_S)
    """Workloads run, nothing counts yet (the study warmed dbench up for 80 s).
    Each part is at most 86400 s (a day)."""

    baseline_s: float = Field(gt=0, le=MAX_PART_S)
    """Measured before the (first) migration starts (the study: 60 s)."""

    after_s: float = Field(default=0.0, ge=0, le=MAX_PART_S)
    """Measured after the (last) migration ends."""

    between_s: float = Field(default=0.0, ge=0, le=MAX_PART_S)
    """Between the legs of a round trip (migrations = 2 or more)."""

    def scaled(self, factor: float) -> Timeline:
        values: dict[str, float] = {}
        for name, floor in _QUICK_MIN_S.items():
            value = getattr(self, name)
            # A part the scenario leaves out stays out.
            values[name] = 0.0 if value == 0 else max(floor, round(value * factor, 1))
        return Timeline(**values)


class Scenario(_Model):
    """One experiment: what to run, where, and for how long."""

    id: str = Field(max_length=64)
    """Short name, lower case letters, digits and '-': `miglab run ID`."""

    title: str = Field(min_length=1, max_length=72)
    """One line saying what it measures (`miglab scenarios` lists it)."""

    study_test: str | None = None
    """The study's test this reproduces, like "test 4" or "analysis 1"."""

    study_result: str | None = None
    """What the study found, for the report to set beside the numbers."""

    probes: list[Entry] = Field(default_factory=list)
    """Measuring tools, each with ``where`` it runs (ping the guest from the storage node)."""

    workloads: list[Entry] = Field(default_factory=list)
    """Load started in the guest at the warm-up (their output is measured too)."""

    sequence: Literal["together", "one-at-a-time"] = "together"
    """"together": everything runs at once; "one-at-a-time": each probe and workload
    runs alone in its own stage (warm-up, baseline...), one after the other."""

    timeline: Timeline
    """The durations of the warm-up, baseline, after and between parts."""

    migrations: int = Field(default=1, ge=0, le=MAX_MIGRATIONS)
    """Migrations per repetition: 1 there, 2 there and back (a round trip), 0 none;
    at most 20."""

    repetitions: int = Field(default=1, ge=1, le=MAX_REPETITIONS)
    """How many times the whole timeline runs (for means and confidence intervals),
    1 to 1000."""

    compare_disks: list[Literal["local", "iscsi"]] | None = None
    """Run once per disk the guest uses, e.g. ["local", "iscsi"] (analysis 1, no migration)."""

    simulation: Simulation | None = None
    """For a simulated run (``miglab run --sim``): the model's inputs this scenario sets,
    over lab.toml's ``[simulation]`` (the same keys, e.g. ``dirtier_mib_s`` for a
    workload's dirtying rate); the real lab ignores it. The run's log header says which
    value came from where."""

    _source: str | None = PrivateAttr(default=None)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise _error("id", f"{value!r}: use lower case letters, digits and '-'")
        return value

    @field_validator("title")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise _error("title", "one line only (put more in study_result)")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Scenario:
        problems = _cross_check(self.model_dump())
        if problems:
            summary = "; ".join(f"{dotted_key(loc)}: {msg}" for loc, msg in problems)
            raise PydanticCustomError(_CROSS_CHECK, "{summary}", {"summary": summary})
        return self

    @property
    def source(self) -> str | None:
        """The file it was loaded from ("built-in" for the shipped ones)."""
        return self._source

    @property
    def entries(self) -> list[Entry]:
        """Workloads, then probes: everything the runner starts."""
        return [*self.workloads, *self.probes]

    def quick(self, factor: float = QUICK_FACTOR) -> Scenario:
        """The same scenario with its timeline scaled by ``factor`` (0 < factor <= 1).

        Parts it has keep a floor (a baseline needs a few 1-second samples); parts
        it leaves out (0 s) stay out. Probe options and counts do not change.
        """
        if not (isinstance(factor, int | float) and 0 < factor <= 1) or isinstance(factor, bool):
            raise ValueError(f"factor must be within (0, 1], got {factor!r}")
        quick = self.model_copy(update={"timeline": self.timeline.scaled(float(factor))})
        quick._source = self._source
        return quick

    def lab_problems(self, lab: LabConfig) -> list[str]:
        """What this scenario asks of ``lab`` that the lab does not have."""
        problems: list[str] = []
        for group, entries in (("probes", self.probes), ("workloads", self.workloads)):
            for i, entry in enumerate(entries):
                where = entry.place
                if where not in WHERE_FIXED and where not in lab.hosts:
                    known = ", ".join([*WHERE_FIXED, *lab.hosts])
                    problems.append(
                        f"{group}[{i}].where: no host {where!r} in the lab; expected one of {known}"
                    )
        return problems

    def host_of(self, entry: Entry, lab: LabConfig) -> str:
        """The lab host name ``entry`` runs on; "console" and "guest" stay as they are."""
        where = entry.place
        if where == "storage":
            return lab.storage.host
        if where in WHERE_FIXED:
            return where
        lab.host(where)  # KeyError naming the lab's hosts
        return where

    def pings_from_storage(self, lab: LabConfig) -> bool:
        """Whether this scenario pings the guest from ``lab``'s storage node itself (then
        the session's own ping from there pauses while it runs)."""
        return any(
            entry.kind == "ping" and self.host_of(entry, lab) == lab.storage.host
            for entry in self.entries
        )


# --------------------------------------------------------------------------- cross-checks

_CROSS_CHECK = "scenario_cross_check"
Loc: TypeAlias = tuple[str | int, ...]


def _cross_check(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Checks that span keys; on plain data, so the loader can locate each one."""
    problems: list[tuple[Loc, str]] = []
    for group in ("probes", "workloads"):
        entries = data.get(group)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, Mapping):
                continue
            where = entry.get("where")
            if group == "workloads" and where is not None and where != "guest":
                problems.append(
                    (
                        (group, i, "where"),
                        "workloads run in the guest; make it a [[probes]] entry to run it "
                        f"on {where!r}",
                    )
                )
            if group == "probes" and where is None:
                problems.append(
                    (
                        (group, i, "where"),
                        'required: where the probe runs, "console", "storage", "guest" '
                        "or a host name",
                    )
                )
    probes, workloads = data.get("probes"), data.get("workloads")
    if not probes and not workloads:
        problems.append((("probes",), "nothing to run: give [[probes]] or [[workloads]]"))
    disks = data.get("compare_disks")
    if isinstance(disks, list):
        if len(disks) != 2 or len(set(map(str, disks))) != 2:
            problems.append((("compare_disks",), 'name two different disks: ["local", "iscsi"]'))
        if data.get("migrations", 1) != 0:
            problems.append(
                (("compare_disks",), "a disk comparison does not migrate; set migrations = 0")
            )
    return problems


# --------------------------------------------------------------------------- loading


def parse_scenario(text: str, file: str = "scenario.toml") -> Scenario:
    """Validate scenario TOML text; ``file`` names it in errors.

    Raises :class:`ConfigError` for one problem, :class:`ConfigErrors` for several.
    """
    body = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        raise toml_syntax_error(exc, body, file) from None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _validation_errors(exc, data, body, file) from None
    scenario._source = file
    return scenario


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario file (blocking). Raises :class:`ConfigError`."""
    found, _ = load_toml_file(
        path, "scenario file", SCENARIO_MAX_BYTES, parse_scenario, missing="no such scenario file"
    )
    return found


@functools.cache
def _builtins() -> tuple[Scenario, ...]:
    folder = resources.files(__package__ or "backend.experiments").joinpath("scenarios")
    found: list[Scenario] = []
    for scenario_id in BUILTIN_IDS:
        name = f"{scenario_id}.toml"
        scenario = parse_scenario(folder.joinpath(name).read_text(encoding="utf-8"), name)
        if scenario.id != scenario_id:
            raise ConfigError(name, None, "id", f"must be {scenario_id!r} (the file's name)")
        scenario._source = "built-in"
        found.append(scenario)
    return tuple(found)


def builtin_scenarios() -> dict[str, Scenario]:
    """The shipped scenarios by id, in the study's order (read once, then cached)."""
    return {scenario.id: scenario for scenario in _builtins()}


def find_scenario(name: str) -> Scenario:
    """A built-in by id, or a scenario file by path. Raises :class:`ConfigError`."""
    builtins = builtin_scenarios()
    if name in builtins:
        return builtins[name]
    if name.endswith(".toml") or os.sep in name or "/" in name or Path(name).exists():
        return load_scenario(name)
    message = f"unknown scenario {name!r}; built-in: {', '.join(builtins)} (or a .toml file)"
    close = difflib.get_close_matches(name, list(builtins), n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    raise ConfigError("", None, "", message)


# --------------------------------------------------------------------------- error messages


def _validation_errors(
    exc: ValidationError, data: Mapping[str, Any], text: str, file: str
) -> ConfigError:
    problems: list[tuple[Loc, str]] = []
    for err in exc.errors(include_url=False):
        if err["type"] == _CROSS_CHECK:
            continue  # reported one by one below, each at its own key
        raw = tuple(err["loc"])
        problems.append((_toml_loc(raw, err), _message(raw, err)))
    for problem in _cross_check(data):
        if problem not in problems:
            problems.append(problem)
    if not problems:  # the cross-check runs on the raw data too; never lose a message
        problems.append(((), str(exc)))
    lines = KeyLines(text)
    errors = [ConfigError(file, lines.line_for(loc), dotted_key(loc), msg) for loc, msg in problems]
    errors.sort(key=lambda e: (e.line is None, e.line or 0))
    return errors[0] if len(errors) == 1 else ConfigErrors(errors)


def _toml_loc(loc: Loc, err: ErrorDetails) -> Loc:
    """pydantic's location as a key path in the file: no union tags; a bad tag is at kind."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        # A discriminated union puts the tag after the list index: probes.0.ping.options
        if i >= 2 and isinstance(loc[i - 1], int) and part in ENTRY_CLASSES:
            continue
        out.append(part)
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        out.append("kind")
    return tuple(out)


def _message(loc: Loc, err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag")
        known = ", ".join(ENTRY_CLASSES)
        return f"unknown kind {tag!r}; expected one of {known}" + did_you_mean(
            str(tag), ENTRY_CLASSES
        )
    if kind == "union_tag_not_found":
        return f"required key is missing; one of {', '.join(ENTRY_CLASSES)}"
    if kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        what = "table" if isinstance(err.get("input"), dict) else "key"
        message = f"unknown {what}"
        if allowed:
            message += f"; expected one of {', '.join(allowed)}"
        return message + did_you_mean(str(loc[-1]), allowed)
    if kind == "missing" and len(loc) == 1:
        return f"required {'table' if loc[0] == 'timeline' else 'key'} is missing"
    return describe_error(err, Scenario)


def _fields_at(loc: Loc) -> list[str]:
    """The keys the model at pydantic location ``loc`` accepts."""
    current: Any = Scenario
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            continue  # a list element: same annotation, unwrapped above
        if isinstance(current, tuple):  # the entry union: the tag picks the class
            current = ENTRY_CLASSES.get(part)
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Down to a model class; a union of entries becomes a tuple of its classes."""
    while True:
        if annotation == Entry:  # the registry's union of entries
            return tuple(ENTRY_CLASSES.values())
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin is list:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
            else:
                return tuple(args)
        else:
            return annotation


def describe_timeline(timeline: Timeline, migrations: int) -> str:
    """'80 s warm-up, 60 s baseline, migrate, 240 s after' (for listings and reports)."""
    parts: list[str] = []
    if timeline.warmup_s:
        parts.append(f"{timeline.warmup_s:g} s warm-up")
    parts.append(f"{timeline.baseline_s:g} s baseline")
    for leg in range(migrations):
        if leg and timeline.between_s:
            parts.append(f"{timeline.between_s:g} s between")
        parts.append("migrate")
    if migrations and timeline.after_s:
        parts.append(f"{timeline.after_s:g} s after")
    return ", ".join(parts)
