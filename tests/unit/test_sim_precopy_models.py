"""One pre-copy model per hypervisor: Xen stream v1, Xen >= 4.6 stream v2, QEMU.

The stop rules as each hypervisor's source states them (cited in
backend/sim/precopy_rules.py), the model picked from the lab, and the inputs a lab.toml
lacks stated with where they came from.
"""

from __future__ import annotations

import itertools

import pytest

from backend.config import LabConfig, parse_lab
from backend.sim import workloads as wl
from backend.sim.assumptions import assumptions
from backend.sim.memory import PAGE_SIZE, PAGES_PER_MIB
from backend.sim.model import BOOT_S, LabParams, Model
from backend.sim.precopy import PreCopy
from backend.sim.precopy_rules import (
    QEMU_PAGE_BYTES,
    QEMU_ZERO_PAGE_BYTES,
    Convergence,
    Qemu,
    XenV1,
    XenV2,
    rules_for,
)
from backend.sim.study import STUDY_LAB_TOML
from backend.tomlfile import ConfigError

SRC, DST = "xenserver1", "xenserver2"


def run(params: LabParams, dirtier_mib: int | None = None, limit_s: float = 3000) -> PreCopy:
    model = Model(params, seed=0)
    model.boot(SRC)
    model.advance(BOOT_S + 1)
    if dirtier_mib is not None:
        model.start(wl.Dirtier, size_mib=dirtier_mib)
        model.advance(5)
    mig = model.migrate(SRC, DST)
    while model.migration is not None and model.t < mig.started + limit_s:
        model.step()
    return mig


def qemu(
    convergence: Convergence = "auto-converge", zero: float = 0.45, **params: object
) -> LabParams:
    rules = rules_for("qemu", convergence=convergence, zero_fraction=zero)
    defaults: dict[str, object] = {
        "memory_mib": 256,
        "vcpus": 1,
        "link_mbit": 100.0,
        "migrate_mbit": 100.0,
        "send_cores_per_mbit": 0.0006,
    }
    return LabParams(rules=rules, **{**defaults, **params})  # type: ignore[arg-type]


def throttles(mig: PreCopy) -> list[int]:
    return [r.total_sent for r in mig.records if r.kind == "throttle"]


# -- Xen ---------------------------------------------------------------------------------


def test_xen_4_17_stops_after_5_iterations_where_xen_4_4_goes_on_to_29() -> None:
    """A guest dirtying faster than the link: stream v2's 5 rounds vs v1's 29 (or 3x)."""
    v1 = run(LabParams(rules=rules_for("xen", (4, 4))), dirtier_mib=460).summary()
    v2 = run(LabParams(rules=rules_for("xen", (4, 17))), dirtier_mib=460).summary()
    assert (v1.model, v2.model) == ("xen-v1", "xen-v2")
    assert v2.rounds == XenV2.max_iterations + 1  # 5 live rounds, then stop-and-copy
    assert v1.rounds > v2.rounds
    assert v1.ok and v2.ok and v2.total_s < v1.total_s


def test_xen_4_17_stops_an_idle_guest_on_fewer_than_50_dirty_pages() -> None:
    mig = run(LabParams(rules=rules_for("xen", (4, 17)), memory_mib=256))
    rounds = [r for r in mig.records if r.kind == "round"]
    assert len(rounds) < XenV2.max_iterations + 1
    assert rounds[-2].dirtied < XenV2.target_dirty  # the check that stopped it
    assert all(r.dirtied >= XenV2.target_dirty for r in rounds[:-2])


def test_xen_sends_every_page_whole_and_has_no_dirty_syncs() -> None:
    summary = run(LabParams(rules=rules_for("xen"), memory_mib=256)).summary()
    assert summary.bytes_sent >= 256 * PAGES_PER_MIB * (PAGE_SIZE + 8)
    assert summary.dirty_syncs == 0 and summary.downtime_limit_ms is None


# -- QEMU --------------------------------------------------------------------------------


def test_qemu_sends_zero_pages_as_flags() -> None:
    zero = run(qemu(zero=0.45)).summary()
    whole = run(qemu(zero=0.0)).summary()
    pages = 256 * PAGES_PER_MIB
    # The first pass: 45 % of the pages cost 9 bytes, not 4104.
    saved = 0.45 * pages * (QEMU_PAGE_BYTES - QEMU_ZERO_PAGE_BYTES)
    assert whole.bytes_sent - zero.bytes_sent == pytest.approx(saved, rel=0.02)
    assert zero.total_s < 0.6 * whole.total_s


def test_qemu_stops_an_idle_guest_within_the_downtime_limit() -> None:
    summary = run(qemu()).summary()
    assert summary.ok
    assert summary.downtime_limit_ms == 300
    assert summary.downtime_s is not None and 0.1 < summary.downtime_s < 0.3 + 0.05
    assert summary.dirty_syncs >= 3  # the set-up's, at least one live one, completion's


def test_a_workloads_pages_are_not_zero() -> None:
    """The RAM dirtier's random data goes out whole in the first pass."""
    mig = run(qemu(convergence="raise-downtime"), dirtier_mib=100)
    assert mig.zero_pages == pytest.approx(0.45 * 256 * PAGES_PER_MIB - 100 * PAGES_PER_MIB, 1)


def test_raise_downtime_doubles_the_limit_after_the_allowed_syncs() -> None:
    mig = run(qemu(convergence="raise-downtime"), dirtier_mib=100)
    limits = [r.total_sent for r in mig.records if r.kind == "downtime-limit"]
    assert limits[:3] == [600, 1200, 2400]
    first = next(r for r in mig.records if r.kind == "downtime-limit")
    rounds_before = [r for r in mig.records if r.kind == "round" and r.t <= first.t]
    assert len(rounds_before) == Qemu.convergence_after_syncs  # sync 6: set-up + 5
    summary = mig.summary()
    assert summary.ok and summary.downtime_s is not None
    # The downtime is what the last limit allows: the 100 MiB working set at ~94 Mbit/s.
    assert 8.0 < summary.downtime_s < limits[-1] / 1000 + 0.5


def throttle_syncs(mig: PreCopy) -> list[int]:
    """The dirty-sync-count at which each throttle step came (set-up's sync is 1)."""
    syncs, out = 1, []
    for r in mig.records:
        if r.kind == "throttle":
            out.append(syncs + 1)
        elif r.kind == "round":
            syncs += 1
    return out


def test_auto_converge_holds_the_throttle_at_1_then_steps_by_10_to_99() -> None:
    mig = run(qemu(), dirtier_mib=100)
    steps = throttles(mig)
    assert steps[0] == 1  # miglab's hold (cpu-throttle-initial 1)
    assert steps[1:] == [11, 21, 31, 41, 51, 61, 71, 81, 91, 99]
    # The driver releases the hold once it has seen sync 6 (after 5 passes): the first
    # released step comes at a later sync, then one every second sync (QEMU's two
    # dirty-rate-high syncs running).
    at = throttle_syncs(mig)
    assert at[1] > Qemu.convergence_after_syncs + 1
    assert [b - a for a, b in itertools.pairwise(at[1:])] == [2] * 9
    summary = mig.summary()
    assert summary.ok and summary.max_throttle_pct == 99
    assert summary.downtime_s is not None and summary.downtime_s < 0.35


def test_no_convergence_policy_never_converges_on_a_fast_dirtier() -> None:
    mig = run(qemu(convergence="none"), dirtier_mib=100, limit_s=600)
    assert not mig.finished and not mig.guest_stopped
    assert throttles(mig) == []


def test_the_migration_thread_is_cpu_bound_on_a_busy_sender() -> None:
    fast = run(qemu(link_mbit=1000.0, migrate_mbit=1000.0)).summary()
    slow = run(qemu(link_mbit=1000.0, migrate_mbit=1000.0, sender_cores=0.3)).summary()
    # 0.3 core / 0.0006 per Mbit/s = 500 Mbit/s instead of the link's 940.
    assert 1.6 < slow.total_s / fast.total_s < 2.2


# -- the model picked from the lab, and what it rests on ---------------------------------


def lab(extra: str = "", **replace: str) -> LabConfig:
    text = STUDY_LAB_TOML
    for old, new in replace.items():
        text = text.replace(old, new)
    return parse_lab(text + extra, file="lab.toml")


def test_a_xen_lab_is_xen_4_4_unless_it_says_its_version() -> None:
    default = assumptions(lab())
    assert isinstance(default.rules, XenV1)
    (version,) = [a for a in default.inputs if a.key == "xen_version"]
    assert version.value == "4.4" and "Debian 8" in version.source
    newer = assumptions(lab('\n[simulation]\nxen_version = "4.17"\n'))
    assert isinstance(newer.rules, XenV2)
    assert "xg_sr_save.c" in newer.rules.source
    assert [a.source for a in newer.inputs if a.key == "xen_version"] == ["lab.toml [simulation]"]


def test_a_qemu_lab_gets_the_qemu_model_with_the_drivers_settings() -> None:
    qemu_lab = lab(
        "\n[simulation]\nzero_fraction = 0.2\n",
        **{
            'driver = "xen"': 'driver = "qemu"\ndowntime_limit_ms = 500\n'
            'convergence = "raise-downtime"',
            'config = "/etc/xen/guest.cfg"': '[guest.qemu]\nkernel = "/boot/vmlinuz"',
        },
    )
    prediction = assumptions(qemu_lab)
    rules = prediction.rules
    assert isinstance(rules, Qemu)
    assert (rules.downtime_limit_ms, rules.convergence, rules.zero_fraction) == (
        500,
        "raise-downtime",
        0.2,
    )
    sources = {a.key: a.source for a in prediction.inputs}
    assert sources["zero_fraction"] == "lab.toml [simulation]"
    assert "measured" in sources["send_cores_per_mbit"]
    assert "study" in sources["dirtier_mib_s"]
    params = LabParams.from_lab(qemu_lab)
    assert params.migrate_mbit == 100.0  # the driver always sets max-bandwidth
    assert params.prediction is prediction or params.prediction == prediction


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('xen_version = "four"', "simulation.xen_version"),
        ("zero_fraction = 1.5", "simulation.zero_fraction"),
        ("dirtier_mib_s = 0", "simulation.dirtier_mib_s"),
        ("sender_cores = 2.0", "simulation.sender_cores"),
        ("warp = 9", "simulation.warp"),
    ],
)
def test_a_bad_simulation_key_names_the_file_line_and_key(line: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        lab(f"\n[simulation]\n{line}\n")
    message = "\n".join(str(e) for e in err.value.errors)
    line_no = (STUDY_LAB_TOML + "\n[simulation]\n").count("\n") + 1
    assert f"lab.toml:{line_no}: {key}" in message
