"""What a prediction rests on: the pre-copy model picked for a lab, and the inputs it lacks.

A lab.toml says which hypervisor runs, how fast the links are and how big the guest is;
it does not say how much of the guest's memory is zero, how fast a workload dirties
memory or what sending costs the host's CPU. :func:`assumptions` picks each of those
from the scenario's ``[simulation]`` table when it has the key (:class:`ScenarioInputs`),
else lab.toml's, else a default, and keeps where each value came from: the simulated
run's log header and its report show them.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.config import LabConfig, Simulation
from backend.sim import workloads as wl
from backend.sim.precopy_rules import (
    QEMU_DEFAULT_DOWNTIME_MS,
    Rules,
    parse_qemu_version,
    parse_xen_version,
    rules_for,
)

DEFAULT_XEN_VERSION = "4.4"
"""What the simulated Xen hosts run (Debian 8: Xen 4.4, the last xl with stream v1)."""

DEFAULT_QEMU_VERSION = "7.2"
"""What the simulated QEMU hosts answer as (Debian 12's QEMU 7.2)."""

DOM0_CORES_PER_MBIT_SENT = 0.0034
"""dom0 CPU per Mbit/s of migration stream sent: mapping and copying pages, TCP."""

QEMU_SEND_CORES_PER_MBIT = 0.0006
"""Measured (LAB-NOTES.md): QEMU 7.2 sent the idle 256 MB guest over an unshaped veth
on an unloaded machine in 706 ms, about 1.7 Gbit/s from one migration thread: at most
0.0006 cores per Mbit/s."""

QEMU_SANDBOX_ZERO_FRACTION = 0.45
"""Measured: the QEMU sandbox's idle 256 MB guest (busybox initramfs) sent 140.6 MiB
of its 256 MiB in its first pass, the rest as zero-page flags
(tests/data/predictions/README.md)."""

SOURCES = {
    "lab": "lab.toml [simulation]",
    "study": "the 2009 study's calibration (REFERENCE.md, backend/sim/workloads.py)",
    "sandbox": "measured on the QEMU sandbox (tests/data/predictions/README.md)",
    "xen": "Xen sends every page whole (no zero-page flag in either stream)",
    "hosts": "what the simulated Xen hosts run (Debian 8, Xen 4.4)",
    "qemu-hosts": "what the simulated QEMU hosts answer as (Debian 12, QEMU 7.2)",
    "qemu": "QEMU's default (migration/options.c)",
    "driver": "lab.toml [hypervisor] (miglab's qemu driver sets it on QEMU)",
    "lab-notes": "measured on this machine kind, unloaded (LAB-NOTES.md: 706 ms, 256 MB)",
    "idle-host": "a sending host with nothing else to run",
}


@dataclass(frozen=True)
class ScenarioInputs:
    """A scenario's ``[simulation]`` table and where it came from (its file)."""

    values: Simulation
    scenario: str
    """The scenario's file (or "built-in ID"), as the log header names it."""

    @property
    def source(self) -> str:
        return f"scenario {self.scenario} [simulation]"


@dataclass(frozen=True)
class Assumption:
    """One input of the prediction: its name, value, unit and where it came from."""

    key: str
    value: float | str
    unit: str
    source: str

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "value": self.value, "unit": self.unit, "source": self.source}


@dataclass(frozen=True)
class Prediction:
    """The model a simulated run uses and the inputs it rests on."""

    rules: Rules
    inputs: tuple[Assumption, ...]

    def value(self, key: str) -> float:
        for a in self.inputs:
            if a.key == key and not isinstance(a.value, str):
                return float(a.value)
        raise KeyError(key)

    def header(self) -> dict[str, object]:
        """For the session log's header (``simulation.model``)."""
        return {
            "key": self.rules.key,
            "title": self.rules.title,
            "source": self.rules.source,
            "inputs": [a.as_dict() for a in self.inputs],
        }


def assumptions(lab: LabConfig, scenario: ScenarioInputs | None = None) -> Prediction:
    """The model and inputs for simulating ``lab`` (``scenario``'s inputs over the lab's)."""
    hv = lab.hypervisor
    inputs: list[Assumption] = []
    tables = [
        *([(scenario.values, scenario.source)] if scenario is not None else []),
        *([(lab.simulation, SOURCES["lab"])] if lab.simulation is not None else []),
    ]

    def given(key: str) -> tuple[float | str | None, str | None]:
        """The first table's value for ``key`` and where it is, else (None, None)."""
        for table, where in tables:
            value = getattr(table, key)
            if value is not None:
                return value, where
        return None, None

    def pick(key: str, default: float, source: str, unit: str) -> float:
        value, where = given(key)
        if value is None or isinstance(value, str):
            inputs.append(Assumption(key, default, unit, source))
            return default
        inputs.append(Assumption(key, value, unit, where or source))
        return float(value)

    if hv.driver == "qemu":
        stated, where = given("qemu_version")
        qemu_version = stated if isinstance(stated, str) else DEFAULT_QEMU_VERSION
        inputs.append(Assumption("qemu_version", qemu_version, "", where or SOURCES["qemu-hosts"]))
        zero = pick(
            "zero_fraction",
            QEMU_SANDBOX_ZERO_FRACTION,
            SOURCES["sandbox"],
            "of guest memory",
        )
        limit = hv.downtime_limit_ms or QEMU_DEFAULT_DOWNTIME_MS
        inputs.append(
            Assumption(
                "downtime_limit_ms",
                limit,
                "ms",
                SOURCES["driver"] if hv.downtime_limit_ms else SOURCES["qemu"],
            )
        )
        inputs.append(Assumption("max_bandwidth_mbit", lab.migrate_bandwidth_mbit, "Mbit/s",
                                 SOURCES["driver"]))  # fmt: skip
        inputs.append(Assumption("convergence", hv.convergence, "", SOURCES["driver"]))
        inputs.append(
            Assumption("convergence_after_syncs", hv.convergence_after_syncs, "syncs",
                       SOURCES["driver"])
        )  # fmt: skip
        rules = rules_for(
            "qemu",
            downtime_limit_ms=limit,
            convergence=hv.convergence,
            convergence_after_syncs=hv.convergence_after_syncs,
            zero_fraction=zero,
            qemu_version=parse_qemu_version(qemu_version),
        )
    else:
        stated, where = given("xen_version")
        version = stated if isinstance(stated, str) else DEFAULT_XEN_VERSION
        inputs.append(Assumption("xen_version", version, "", where or SOURCES["hosts"]))
        inputs.append(Assumption("zero_fraction", 0.0, "of guest memory", SOURCES["xen"]))
        rules = rules_for("xen", parse_xen_version(version))
    pick(
        "dirtier_mib_s",
        wl.DIRTIER_MIB_S,
        SOURCES["study"],
        "MiB/s",
    )
    qemu = hv.driver == "qemu"
    pick(
        "send_cores_per_mbit",
        QEMU_SEND_CORES_PER_MBIT if qemu else DOM0_CORES_PER_MBIT_SENT,
        SOURCES["lab-notes"] if qemu else SOURCES["study"],
        "cores per Mbit/s",
    )
    if qemu:
        pick(
            "sender_cores",
            1.0,
            SOURCES["idle-host"],
            "cores for the migration thread",
        )
    return Prediction(rules, tuple(inputs))
