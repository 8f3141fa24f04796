"""The simulated migration's ``query-migrate`` replies, against real QEMU 7.2 replies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.drivers.qmp import MigrationStatus
from backend.sim import workloads as wl
from backend.sim.memory import PAGE_SIZE
from backend.sim.model import BOOT_S, LabParams, Model
from backend.sim.precopy_rules import QEMU_PAGE_BYTES, QEMU_ZERO_PAGE_BYTES, rules_for
from backend.sim.qmp_replies import query_migrate

REAL = Path(__file__).resolve().parents[1] / "data" / "qmp" / "source.jsonl"


def real_replies() -> dict[str, dict[str, Any]]:
    """The first real ``query-migrate`` reply of each status (QEMU 7.2.22)."""
    found: dict[str, dict[str, Any]] = {}
    for line in REAL.read_text().splitlines():
        entry = json.loads(line)
        if entry["dir"] != "s2c":
            continue
        reply = json.loads(entry["line"]).get("return")
        if isinstance(reply, dict) and reply.get("status") in ("setup", "active", "completed"):
            found.setdefault(reply["status"], reply)
    return found


def replies(dirtier_mib: int | None = None) -> tuple[list[dict[str, Any]], Model]:
    params = LabParams(
        memory_mib=256,
        vcpus=1,
        migrate_mbit=100.0,
        rules=rules_for("qemu", zero_fraction=0.45),
        send_cores_per_mbit=0.0006,
    )
    model = Model(params, seed=0)
    model.boot("xenserver1")
    model.advance(BOOT_S + 1)
    if dirtier_mib:
        model.start(wl.Dirtier, size_mib=dirtier_mib)
    mig = model.migrate("xenserver1", "xenserver2")
    out = [query_migrate(mig, model.t)]
    while model.migration is not None:
        model.step()
        out.append(query_migrate(mig, model.t))
    return out, model


def test_each_status_has_the_members_real_qemu_sends_in_its_order() -> None:
    real = real_replies()
    got, _ = replies()
    for status in ("setup", "active", "completed"):
        ours = next(r for r in got if r["status"] == status)
        assert list(ours) == list(real[status]), status
        if "ram" in ours:
            assert list(ours["ram"]) == list(real[status]["ram"]), status


def test_the_replies_read_as_the_driver_reads_them_and_add_up() -> None:
    got, model = replies()
    statuses = [MigrationStatus.model_validate(r) for r in got]
    assert [s.status for s in statuses][:1] == ["setup"]
    assert statuses[-1].status == "completed"
    summary = model.last_migration()
    assert summary is not None and summary.downtime_s is not None
    last = statuses[-1]
    assert last.downtime_ms == round(summary.downtime_s * 1000)
    assert last.ram is not None and last.ram.dirty_sync_count == summary.dirty_syncs
    ram = last.ram
    assert ram.duplicate and ram.normal and ram.transferred and ram.remaining == 0
    # Zero pages went out as 9-byte flags, the others whole.
    wire = ram.duplicate * QEMU_ZERO_PAGE_BYTES + ram.normal * QEMU_PAGE_BYTES
    assert abs(wire - ram.transferred) < 0.01 * ram.transferred
    assert ram.normal_bytes == ram.normal * PAGE_SIZE
    active = [s for s in statuses if s.status == "active"]
    remaining = [s.ram.remaining for s in active if s.ram is not None]
    assert remaining[0] is not None and remaining[0] > 0.9 * 256 * 2**20


def test_auto_converge_shows_the_throttle_while_it_runs() -> None:
    got, _ = replies(dirtier_mib=100)
    throttled = [r["cpu-throttle-percentage"] for r in got if "cpu-throttle-percentage" in r]
    assert throttled[0] == 1 and max(throttled) == 99
    assert "cpu-throttle-percentage" not in got[-1]  # completed
    dirtying = [r for r in got if r["status"] == "active" and r["ram"]["dirty-pages-rate"] > 0]
    assert dirtying and all(r["expected-downtime"] > 300 for r in dirtying[:3])
