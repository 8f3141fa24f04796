"""Campaigns: a matrix of scenarios x parameters x repetitions, run one after another.

A campaign is a TOML file (example: ``backend/experiments/campaigns/link-speed.toml``)::

    name = "link-speed"             # lower case letters, digits and '-'
    title = "ping and sysbench at 100 and 1000 Mbit/s"
    scenarios = ["migrate-ping", "migrate-sysbench-cpu"]   # built-in ids or files
    repetitions = 3                 # runs per scenario and combination of parameters
    quick = false                   # the scenarios' timelines x0.1 (tests, trials)

    [parameters.lab]                # lab.toml keys, each a list of the values to try
    link_mbit = [100, 1000]

    [parameters.hypervisor]
    convergence = ["auto-converge", "none"]

    [parameters.sim]                # the simulated lab only: the model's seed
    seed = [0, 1000]

Every combination of every parameter's values is a *group*; each group runs each
scenario ``repetitions`` times, one session log per run, in
``OUT/GROUP/rN.jsonl`` (OUT: ``sessions/NAME`` unless told). The runs go
repetition by repetition (all groups' first runs, then all second runs), so that a
drift of the lab over the day spreads over every group alike, and a campaign cut
short has some of every group. A run's seed on the simulated lab is the group's
``sim.seed`` (default 0) plus its repetition number minus one.

A run is done when its log ends with status "ok". Resuming starts at the first run
without such a log; a log a run left incomplete (interrupted, failed, cut short) is
kept beside it as ``rN.jsonl.incomplete-K`` and the run is done again.

Errors name the file, line and key (``ConfigError``, the machinery of lab.toml and
scenario files). Loading reads files: it blocks.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from backend.config import Guest, Hypervisor, Lab, LabConfig
from backend.experiments.scenarios import MAX_REPETITIONS, Scenario, find_scenario
from backend.inputs import (
    SCENARIO_MAX_BYTES,
)
from backend.tomlfile import (
    ConfigError,
    ConfigErrors,
    KeyLines,
    describe_error,
    dotted_key,
    load_toml_file,
    toml_syntax_error,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "PARAMETERS",
    "SEED_KEY",
    "Campaign",
    "CampaignRun",
    "LoadedCampaign",
    "apply_parameters",
    "campaign_dir",
    "group_name",
    "load_campaign",
    "log_is_complete",
    "parse_campaign",
    "pending",
    "plan_runs",
    "set_aside",
    "short_name",
]

MAX_RUNS = 100_000
"""The most runs one campaign may plan (a typo like 1000 values x 1000 repetitions)."""
MAX_VALUES = 100

_MODELS: dict[str, type[BaseModel]] = {"lab": Lab, "guest": Guest, "hypervisor": Hypervisor}

PARAMETERS: dict[str, str] = {
    "lab.link_mbit": "the link speed the lab assumes (the migration's bandwidth cap unless "
    "hypervisor.migrate_bandwidth_mbit is set); the simulated lab runs at it",
    "guest.memory_mb": "the guest's memory (the simulated lab; a real guest's config must match)",
    "guest.vcpus": "the guest's vCPUs (the simulated lab; a real guest's config must match)",
    "hypervisor.migrate_bandwidth_mbit": "the migration's bandwidth cap",
    "hypervisor.downtime_limit_ms": "the stop-and-copy downtime asked for (QEMU)",
    "hypervisor.convergence": "what to do when pre-copy does not converge (QEMU)",
    "hypervisor.convergence_after_syncs": "passes before the convergence policy acts (QEMU)",
    "sim.seed": "the simulated lab's random seed (with --sim only)",
}
"""The parameters a campaign may vary between runs, with what each changes."""

SEED_KEY = "sim.seed"
MAX_SEED = 2**63 - 1
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_VALUE_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")

Value = int | str
Loc = tuple[str | int, ...]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Campaign(_Model):
    """A campaign file, validated."""

    name: str = Field(max_length=64)
    """Lower case letters, digits and '-': the folder its logs go to (sessions/NAME)."""

    title: str = Field(default="", max_length=200)
    """One line saying what it compares."""

    scenarios: list[str] = Field(min_length=1, max_length=100)
    """Built-in scenario ids or scenario files (relative to the campaign file)."""

    repetitions: int = Field(default=1, ge=1, le=MAX_REPETITIONS)
    """Runs per scenario and combination of parameters."""

    quick: bool = False
    """Run the scenarios' timelines shortened (x0.1), as ``miglab run --quick``."""

    parameters: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)
    """[parameters.TABLE] KEY = [values]: see :data:`PARAMETERS`."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"{value!r}: use lower case letters, digits and '-'")
        return value


@dataclass(frozen=True)
class LoadedCampaign:
    """A campaign with its scenarios loaded and its parameters checked."""

    campaign: Campaign
    file: str
    scenarios: tuple[Scenario, ...]
    parameters: tuple[tuple[str, tuple[Value, ...]], ...]
    """(dotted key, values) in the file's order."""

    @property
    def name(self) -> str:
        return self.campaign.name

    def groups(self) -> list[dict[str, Value]]:
        """Every combination of the parameters' values, in the file's order."""
        keys = [key for key, _ in self.parameters]
        combos = itertools.product(*(values for _, values in self.parameters))
        return [dict(zip(keys, combo, strict=True)) for combo in combos]


@dataclass(frozen=True)
class CampaignRun:
    """One run of a campaign: a scenario in a group, one repetition, one log."""

    index: int
    """1-based, in the order the campaign runs them."""
    scenario: Scenario
    group: str
    """The folder of its group: scenario id and parameter values."""
    parameters: Mapping[str, Value]
    repetition: int
    log: Path

    @property
    def run_id(self) -> str:
        return f"{self.group}/r{self.repetition}"

    @property
    def seed(self) -> int:
        base = self.parameters.get(SEED_KEY, 0)
        assert isinstance(base, int)
        return base + self.repetition - 1

    def header(self, campaign: LoadedCampaign) -> dict[str, Any]:
        """What the session log's header says about the campaign this run belongs to."""
        return {
            "name": campaign.name,
            "file": campaign.file,
            "group": self.group,
            "run": self.run_id,
            "repetition": self.repetition,
            "of": campaign.campaign.repetitions,
            "parameters": dict(self.parameters),
        }

    def describe(self) -> str:
        shown = " ".join(f"{short_name(k)}={v}" for k, v in self.parameters.items())
        return f"{self.scenario.id}{' ' + shown if shown else ''} rep {self.repetition}"


def short_name(key: str) -> str:
    """A parameter's column and folder name: its last part (link_mbit, seed)."""
    return key.rpartition(".")[2]


# --------------------------------------------------------------------------- loading


def parse_campaign(text: str, file: str = "campaign.toml") -> LoadedCampaign:
    """Validate campaign TOML text; ``file`` names it in errors and is where scenario files
    are looked up from. Raises :class:`ConfigError` (or :class:`ConfigErrors`)."""
    body = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        raise toml_syntax_error(exc, body, file) from None
    lines = KeyLines(body)

    def error(loc: Loc, message: str) -> ConfigError:
        return ConfigError(file, lines.line_for(loc), dotted_key(loc), message)

    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        errors = [
            error(tuple(e["loc"]), describe_error(e, Campaign))
            for e in exc.errors(include_url=False)
        ]
        raise (errors[0] if len(errors) == 1 else ConfigErrors(errors)) from None
    problems: list[ConfigError] = []
    parameters = _parameters(campaign, error, problems)
    scenarios: list[Scenario] = []
    base = Path(file).parent
    for i, name in enumerate(campaign.scenarios):
        try:
            scenarios.append(_scenario(name, base))
        except ConfigError as err:
            problems.append(error(("scenarios", i), "; ".join(str(e) for e in err.errors)))
    ids = [s.id for s in scenarios]
    for i, scenario_id in enumerate(ids):
        if scenario_id in ids[:i]:
            problems.append(error(("scenarios", i), f"{scenario_id!r} is named twice"))
    runs = len(scenarios) * campaign.repetitions
    for _, values in parameters:
        runs *= len(values)
    if runs > MAX_RUNS:
        problems.append(error(("repetitions",), f"{runs} runs; a campaign runs {MAX_RUNS} at most"))
    if problems:
        problems.sort(key=lambda e: (e.line is None, e.line or 0))
        raise problems[0] if len(problems) == 1 else ConfigErrors(problems)
    return LoadedCampaign(campaign, file, tuple(scenarios), tuple(parameters))


def _scenario(name: str, base: Path) -> Scenario:
    looks_like_file = name.endswith(".toml") or "/" in name or os.sep in name
    if looks_like_file and not Path(name).is_absolute():
        return find_scenario(str(base / name))
    return find_scenario(name)


def _parameters(
    campaign: Campaign, error: Callable[[Loc, str], ConfigError], problems: list[ConfigError]
) -> list[tuple[str, tuple[Value, ...]]]:
    out: list[tuple[str, tuple[Value, ...]]] = []
    for table, keys in campaign.parameters.items():
        for key, values in keys.items():
            dotted = f"{table}.{key}"
            loc: Loc = ("parameters", table, key)
            if dotted not in PARAMETERS:
                known = ", ".join(PARAMETERS)
                problems.append(error(loc, f"not a parameter a campaign can vary; one of {known}"))
                continue
            if not values or len(values) > MAX_VALUES:
                problems.append(error(loc, f"give 1 to {MAX_VALUES} values"))
                continue
            checked: list[Value] = []
            for i, value in enumerate(values):
                problem = _value_problem(dotted, value)
                if problem is None and value in checked:
                    problem = f"{value!r} is given twice"
                if problem is not None:
                    problems.append(error((*loc, i), problem))
                elif isinstance(value, int | str):
                    checked.append(value)
            out.append((dotted, tuple(checked)))
    return out


def _value_problem(dotted: str, value: object) -> str | None:
    """Why ``value`` cannot be ``dotted`` (checked by lab.toml's own model), or None."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return f"expected a whole number or a string, got {value!r:.40}"
    if dotted == SEED_KEY:
        if not isinstance(value, int) or not 0 <= value <= MAX_SEED:
            return f"a seed is a whole number, 0 to {MAX_SEED}"
        return None
    table, _, key = dotted.partition(".")
    field = _MODELS[table].model_fields[key]
    # lab.toml's own type and bounds (ge, le) of that key, strict as lab.toml is.
    kind: Any = field.annotation
    if field.metadata:
        kind = Annotated[(kind, *field.metadata)]
    try:
        TypeAdapter(kind, config=ConfigDict(strict=True)).validate_python(value)
    except ValidationError as exc:
        return describe_error(exc.errors(include_url=False)[0], _MODELS[table])
    if not _VALUE_TEXT.fullmatch(str(value)):
        return "a value names a folder: letters, digits, '.' and '-'"
    return None


def load_campaign(path: str | os.PathLike[str]) -> LoadedCampaign:
    """Read and validate a campaign file (blocking). Raises :class:`ConfigError`."""
    found, _ = load_toml_file(
        path, "campaign file", SCENARIO_MAX_BYTES, parse_campaign, missing="no such campaign file"
    )
    return found


# --------------------------------------------------------------------------- the runs


def campaign_dir(campaign: LoadedCampaign, out: str | os.PathLike[str] | None = None) -> Path:
    return Path(out) if out is not None else Path("sessions") / campaign.name


def group_name(scenario: Scenario, parameters: Mapping[str, Value]) -> str:
    parts = [scenario.id, *(f"{short_name(k)}-{v}" for k, v in parameters.items())]
    return "_".join(parts)


def plan_runs(campaign: LoadedCampaign, out: Path) -> list[CampaignRun]:
    """Every run, in the order they run: repetition by repetition, then group by group."""
    runs: list[CampaignRun] = []
    groups = campaign.groups()
    for repetition in range(1, campaign.campaign.repetitions + 1):
        for scenario in campaign.scenarios:
            for parameters in groups:
                group = group_name(scenario, parameters)
                runs.append(
                    CampaignRun(
                        index=len(runs) + 1,
                        scenario=scenario.quick() if campaign.campaign.quick else scenario,
                        group=group,
                        parameters=parameters,
                        repetition=repetition,
                        log=out / group / f"r{repetition}.jsonl",
                    )
                )
    return runs


def apply_parameters(lab: LabConfig, parameters: Mapping[str, Value]) -> LabConfig:
    """``lab`` with the run's lab.toml parameters set (each value was checked at load)."""
    updates: dict[str, dict[str, Value]] = {}
    for dotted, value in parameters.items():
        table, _, key = dotted.partition(".")
        if table in _MODELS:
            updates.setdefault(table, {})[key] = value
    changed = {
        table: getattr(lab, table).model_copy(update=keys) for table, keys in updates.items()
    }
    return lab.model_copy(update=changed)


_TAIL_BYTES = 64 * 1024


def log_is_complete(path: Path) -> bool:
    """Whether ``path`` is a session log that ends with status "ok" (reads its tail only)."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - _TAIL_BYTES))
            tail = file.read()
    except OSError:
        return False
    lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
    if not tail.endswith(b"\n"):
        return False  # cut mid-line
    last = lines[-1]
    return b'"kind":"session.end"' in last and b'"status":"ok"' in last


def set_aside(path: Path) -> Path | None:
    """Move an incomplete log out of the way (kept: nothing recorded is lost)."""
    if not os.path.lexists(path):
        return None
    for k in itertools.count(1):
        aside = path.with_name(f"{path.name}.incomplete-{k}")
        if not os.path.lexists(aside):
            path.rename(aside)
            return aside
    raise AssertionError("unreachable")


def pending(runs: Sequence[CampaignRun]) -> list[CampaignRun]:
    """The runs without a complete log, in order: a resumed campaign starts at the first."""
    return [run for run in runs if not log_is_complete(run.log)]
