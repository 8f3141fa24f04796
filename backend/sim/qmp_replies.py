"""``query-migrate`` as QEMU 7.2 answers it, from a simulated migration.

The members and their order are those of real replies (``tests/data/qmp/source.jsonl``,
QEMU 7.2.22 here): ``setup`` alone; ``active`` (and ``device``, the stop-and-copy) with
``expected-downtime``, ``setup-time``, ``total-time`` and ``ram``; ``completed`` with
``downtime`` instead of ``expected-downtime``. ``cpu-throttle-percentage`` appears while
auto-converge throttles (``populate_time_info``/``fill_source_migration_info``,
migration/migration.c). ``expected-downtime`` is the limit until the guest dirties
memory, then the dirty bytes of the last sync over the bandwidth (QEMU 8's
``dirty_bytes_last_sync / bandwidth``; 7.2's estimate is of the same kind).
"""

from __future__ import annotations

from typing import Any

from backend.sim.memory import PAGE_SIZE
from backend.sim.precopy import PreCopy, Stage
from backend.sim.precopy_rules import Qemu


def query_migrate(mig: PreCopy, t: float) -> dict[str, Any]:
    """The ``return`` member of ``query-migrate`` at simulated time ``t``."""
    if mig.stage is Stage.SETUP:
        return {"status": "setup"}
    if mig.stage is Stage.ABORTED:
        return {"status": "failed"}
    done = mig.stage in (Stage.FINISHING, Stage.DONE)
    end = mig.resumed_at if done and mig.resumed_at is not None else t
    total_ms = round((end - mig.started) * 1000)
    setup_ms = round(mig.rules.setup_s * 1000)
    reply: dict[str, Any] = {}
    if done:
        downtime = (mig.resumed_at or t) - (mig.suspended_at or t)
        reply = {"status": "completed", "setup-time": setup_ms, "downtime": round(downtime * 1000)}
    else:
        status = "device" if mig.guest_stopped else "active"
        reply = {"expected-downtime": _expected_downtime_ms(mig), "status": status}
        reply["setup-time"] = setup_ms
    reply["total-time"] = total_ms
    reply["ram"] = _ram(mig, t, done)
    rules = mig.rules
    if isinstance(rules, Qemu) and rules.convergence == "auto-converge" and mig.throttle_pct:
        if not done:
            reply["cpu-throttle-percentage"] = mig.throttle_pct
    return reply


def _expected_downtime_ms(mig: PreCopy) -> int:
    _, dirtied, period = mig.last_sync
    bandwidth = mig.rate_pages * mig.page_bytes / 1000  # bytes per ms
    if dirtied <= 0 or period <= 0 or bandwidth <= 0:
        return mig.downtime_limit_ms
    return round(dirtied * PAGE_SIZE / bandwidth)


def _ram(mig: PreCopy, t: float, done: bool) -> dict[str, Any]:
    pages = round(mig.total_sent + (0 if done else mig.sent))
    zero = round(mig.zero_sent)
    normal = max(0, pages - zero)
    transferred = round(mig.bytes_sent)
    remaining = 0 if done else max(0, round((mig.to_send - mig.sent) * PAGE_SIZE))
    _, dirtied, period = mig.last_sync
    mbps = mig.rate_pages * mig.page_bytes * 8 / 1e6
    return {
        "total": mig.pages * PAGE_SIZE,
        "postcopy-requests": 0,
        "dirty-sync-count": mig.syncs,
        "multifd-bytes": 0,
        "pages-per-second": round(mig.rate_pages),
        "downtime-bytes": round(mig.downtime_bytes),
        "page-size": PAGE_SIZE,
        "remaining": remaining,
        "postcopy-bytes": 0,
        "mbps": mbps,
        "transferred": transferred,
        "dirty-sync-missed-zero-copy": 0,
        "precopy-bytes": max(0, transferred - round(mig.downtime_bytes)),
        "duplicate": zero,
        "dirty-pages-rate": round(dirtied / period) if period > 0 else 0,
        "skipped": 0,
        "normal-bytes": normal * PAGE_SIZE,
        "normal": normal,
    }
