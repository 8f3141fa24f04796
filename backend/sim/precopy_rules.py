"""When pre-copy stops: one set of rules per hypervisor, each from that hypervisor's source.

:class:`~backend.sim.precopy.PreCopy` runs the rounds (send what is dirty while the guest
runs, read the dirty log, again, then stop the guest and send the rest); a :class:`Rules`
decides where a round ends, whether to go on, and what a page costs on the wire.

* :class:`XenV1` — Xen 3.x to 4.5, migration stream v1, ``tools/libxc/xc_domain_save.c``
  (``xc_domain_save``): a round sends every page dirty at its start; after it, stop if
  ``iter >= max_iters`` (29), ``sent_this_iter + skip_this_iter < 50`` or
  ``total_sent > max_factor * p2m_size`` (3x memory). Every page goes out whole.
* :class:`XenV2` — Xen 4.6 and later, stream v2, ``tools/libs/guest/xg_sr_save.c``
  (``send_memory_live`` with ``simple_precopy_policy``): stop when ``dirty_count <
  SPP_TARGET_DIRTY_COUNT`` (50) or ``iteration >= SPP_MAX_ITERATIONS`` (5). What xl 4.17
  prints is xl's own (``backend/sim/commands/xl.py``); the rounds are these.
* :class:`Qemu` — QEMU (7.2 here), ``migration/migration.c`` and ``migration/ram.c``:

  - there are no rounds to finish: RAM is one pass over the dirty bitmap, and the bitmap is
    synced (``migration_bitmap_sync``, counted in ``dirty-sync-count``) only when what is
    left in it falls below ``threshold_size`` (``ram_state_pending_exact`` via
    ``migration_iteration_run``, checked between the rate limiter's 100 ms slots: on
    average half a slot below it). ``threshold_size = bandwidth * downtime_limit``
    (``migration_update_counters``), bandwidth being what the stream achieved. If after
    the sync what is pending is still below the threshold, ``migration_completion`` stops
    the guest and sends it: the downtime is at most about ``downtime-limit``;
  - a zero page goes out as a flag: its 8-byte header and one byte
    (``save_zero_page_to_file``); other pages as header + 4096 bytes;
  - ``max-bandwidth`` caps the stream (miglab sets it to the lab's migration bandwidth);
  - auto-converge (``migration_trigger_throttle``, ``mig_throttle_guest_down``): at a sync
    at least a second after the last, if the guest dirtied more than half
    (``throttle-trigger-threshold`` 50 %) of what was sent in the period, twice running,
    the vCPUs are throttled: ``cpu-throttle-initial`` the first time, then
    ``+cpu-throttle-increment`` up to ``max-cpu-throttle``. miglab's driver
    (``backend/drivers/hv_qemu.py``, :class:`ConvergencePolicy`) holds those at 1 % until
    ``convergence_after_syncs`` syncs have passed, then releases them to QEMU's defaults
    (20, 10, 99): so the throttle goes 1, 11, 21 ... 91, 99;
  - QEMU 9.2 and later (``migration/cpu-throttle.c``, ``cpu_throttle_dirty_sync_timer``):
    with auto-converge, the first throttle check starts a 5 s timer
    (``CPU_THROTTLE_DIRTY_SYNC_TIMESLICE_MS``); at each tick, if no sync happened since
    the last tick (and the count is past 1), it syncs the bitmap in the middle of the
    pass (``migration_bitmap_sync_precopy``), which checks the throttle again: so the
    throttle steps up every 10 s however long a pass takes (7.2: every second pass);
  - raise-downtime (miglab's policy, same driver): each sync past
    ``convergence_after_syncs`` doubles ``downtime-limit`` (at most 2 000 000 ms);
  - after the switch-over QEMU announces the guest (``qemu_announce_self``: first RARP
    after ``announce-initial``, 50 ms): until then the switch sends replies to the old port.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from backend.sim.memory import PAGE_SIZE

if TYPE_CHECKING:
    from backend.sim.precopy import PreCopy

Convergence = Literal["none", "auto-converge", "raise-downtime"]

XEN_STREAM_BYTES_PER_PAGE = PAGE_SIZE + 8
"""A page plus its share of the batch headers (pfn types, batch count)."""
QEMU_PAGE_HEADER = 8
"""``save_page_header``: the page's offset and flags in one be64 (the block name only when
the block changes: once per pass, nothing per page)."""
QEMU_ZERO_PAGE_BYTES = QEMU_PAGE_HEADER + 1
QEMU_PAGE_BYTES = QEMU_PAGE_HEADER + PAGE_SIZE
QEMU_DEFAULT_DOWNTIME_MS = 300  # migration/options.c DEFAULT_MIGRATE_SET_DOWNTIME
QEMU_BUFFER_DELAY_S = 0.1  # migration.h BUFFER_DELAY: the rate limiter's slot, 100 ms
QEMU_THROTTLE_TRIGGER = 0.5  # DEFAULT_MIGRATE_THROTTLE_TRIGGER_THRESHOLD, 50 %
QEMU_THROTTLE_PERIOD_S = 1.0  # migration_bitmap_sync: "end_time > time_last + 1000"
QEMU_DIRTY_SYNC_TIMER_S = 5.0  # cpu-throttle.c CPU_THROTTLE_DIRTY_SYNC_TIMESLICE_MS (9.2+)
QEMU_DIRTY_SYNC_TIMER_SINCE = (9, 2)
THROTTLE_HELD = (1, 1, 1)  # miglab's hold (initial, increment, max), hv_qemu.THROTTLE_HELD
THROTTLE_RELEASED = (20, 10, 99)  # QEMU's defaults, hv_qemu.THROTTLE_RELEASED
MAX_DOWNTIME_LIMIT_MS = 2_000_000

XEN_SETUP_S = 1.5
"""ssh to the destination, ``xl migrate-receive`` creating the incoming domain (its
memory allocated and scrubbed), the stream and config header."""
XEN_SUSPEND_S = 0.010
"""PV suspend through xenstore: the guest acknowledges and parks its vCPUs."""
XEN_RESTORE_S = 0.030
"""Receiver: page-table fix-ups, device re-creation, GO handshake, unpause."""
XEN_FINISH_S = 0.25
"""Sender: destroying the source copy, the last handshake messages."""


@dataclass(frozen=True)
class Rules(ABC):
    """What a hypervisor's pre-copy does that the rounds' engine needs to know."""

    key: str
    title: str
    source: str
    """Where the rules come from (file and function), for the run's header."""
    setup_s: float
    """From the command to the first page on the wire."""
    suspend_s: float
    """Stopping the guest."""
    restore_s: float
    """After the last page: the receiver builds the guest and resumes it."""
    finish_s: float
    """After the resume, until the command reports success."""
    announce_s: float = 0.0
    """After the resume, until the network sends the guest's packets to its new port."""

    def page_bytes(self, mig: PreCopy) -> float:
        """Bytes on the wire per page of the current round."""
        return float(XEN_STREAM_BYTES_PER_PAGE)

    def sync_left(self, mig: PreCopy, rate_pages: float) -> float:
        """Pages still to send in the round when the dirty log is read (Xen: none)."""
        return 0.0

    @abstractmethod
    def stop(self, mig: PreCopy, left: float, dirtied: int, rate_pages: float) -> bool:
        """After reading the dirty log: stop the guest now (else another round)."""


@dataclass(frozen=True)
class XenV1(Rules):
    """Xen <= 4.5: 29 iterations, 3x memory sent, or fewer than 50 pages sent in a round."""

    max_iters: int = 29  # DEF_MAX_ITERS
    max_factor: int = 3  # DEF_MAX_FACTOR
    min_sent: int = 50

    def stop(self, mig: PreCopy, left: float, dirtied: int, rate_pages: float) -> bool:
        return (
            mig.iteration >= self.max_iters
            or mig.to_send < self.min_sent
            or mig.total_sent > self.max_factor * mig.pages
        )


@dataclass(frozen=True)
class XenV2(Rules):
    """Xen >= 4.6: 5 iterations, or fewer than 50 dirty pages (``simple_precopy_policy``)."""

    max_iterations: int = 5  # SPP_MAX_ITERATIONS
    target_dirty: int = 50  # SPP_TARGET_DIRTY_COUNT

    def stop(self, mig: PreCopy, left: float, dirtied: int, rate_pages: float) -> bool:
        return mig.iteration >= self.max_iterations or dirtied < self.target_dirty


@dataclass(frozen=True)
class Qemu(Rules):
    """QEMU: stop when what is pending fits ``downtime-limit`` at the achieved bandwidth."""

    downtime_limit_ms: int = QEMU_DEFAULT_DOWNTIME_MS
    convergence: Convergence = "auto-converge"
    convergence_after_syncs: int = 5
    zero_fraction: float = 0.0
    """Of an idle guest's memory, the part that is zero (workloads write over some of it:
    :attr:`PreCopy.zero_pages`)."""
    dirty_sync_timer_s: float = 0.0
    """QEMU >= 9.2 with auto-converge: a bitmap sync at least this often once the throttle
    has been checked (0: none, as in 7.2)."""

    def page_bytes(self, mig: PreCopy) -> float:
        if mig.iteration > 1:  # pages written since the start: not zero any more
            return float(QEMU_PAGE_BYTES)
        z = mig.zero_pages / mig.pages if mig.pages else 0.0
        return z * QEMU_ZERO_PAGE_BYTES + (1 - z) * QEMU_PAGE_BYTES

    def threshold_bytes(self, mig: PreCopy, rate_pages: float) -> float:
        """``threshold_size``: what can go out within ``downtime-limit`` at today's rate."""
        return rate_pages * self.page_bytes(mig) * mig.downtime_limit_ms / 1000

    def sync_left(self, mig: PreCopy, rate_pages: float) -> float:
        # QEMU sends in slots of BUFFER_DELAY and looks at what is pending between them
        # (ram_state_pending_estimate: dirty pages x TARGET_PAGE_SIZE, zero or not), so
        # it finds less than the threshold left half a slot below it, on average.
        half_slot = rate_pages * self.page_bytes(mig) * QEMU_BUFFER_DELAY_S / 2
        return max(0.0, self.threshold_bytes(mig, rate_pages) - half_slot) / PAGE_SIZE

    def stop(self, mig: PreCopy, left: float, dirtied: int, rate_pages: float) -> bool:
        pending = (left + dirtied) * PAGE_SIZE
        return pending < self.threshold_bytes(mig, rate_pages)


def rules_for(
    hypervisor: str,
    xen_version: tuple[int, int] = (4, 4),
    *,
    downtime_limit_ms: int | None = None,
    convergence: Convergence = "auto-converge",
    convergence_after_syncs: int = 5,
    zero_fraction: float = 0.0,
    qemu_version: tuple[int, int] = (7, 2),
) -> Rules:
    """The rules of ``hypervisor`` ("xen" or "qemu"), Xen's and QEMU's by their version."""
    if hypervisor == "qemu":
        timer = qemu_version >= QEMU_DIRTY_SYNC_TIMER_SINCE
        version = f"{qemu_version[0]}.{qemu_version[1]}"
        return Qemu(
            key="qemu",
            title=f"QEMU {version} pre-copy (downtime-limit, zero pages as flags, "
            "dirty-bitmap syncs" + (", a sync every 5 s under auto-converge)" if timer else ")"),
            source="qemu migration/migration.c migration_iteration_run, "
            "migration_update_counters; migration/ram.c migration_bitmap_sync, "
            "migration_trigger_throttle, save_zero_page_to_file"
            + ("; migration/cpu-throttle.c cpu_throttle_dirty_sync_timer_tick" if timer else ""),
            setup_s=0.005,  # setup-time: 1 ms on the sandbox, a few ms on a larger guest
            suspend_s=0.002,  # vm_stop_force_state
            restore_s=0.015,  # device state, the destination's load and vm_start
            finish_s=0.0,  # total-time ends at completion
            announce_s=0.05,  # announce-initial
            downtime_limit_ms=downtime_limit_ms or QEMU_DEFAULT_DOWNTIME_MS,
            convergence=convergence,
            convergence_after_syncs=convergence_after_syncs,
            zero_fraction=zero_fraction,
            dirty_sync_timer_s=QEMU_DIRTY_SYNC_TIMER_S if timer else 0.0,
        )
    if hypervisor != "xen":
        raise ValueError(f"no pre-copy model for hypervisor {hypervisor!r}")
    version = f"{xen_version[0]}.{xen_version[1]}"
    if xen_version >= (4, 6):
        return XenV2(
            key="xen-v2",
            title=f"Xen {version} pre-copy (migration stream v2: 5 iterations or < 50 dirty pages)",
            source="xen tools/libs/guest/xg_sr_save.c send_memory_live, simple_precopy_policy",
            setup_s=XEN_SETUP_S,
            suspend_s=XEN_SUSPEND_S,
            restore_s=XEN_RESTORE_S,
            finish_s=XEN_FINISH_S,
        )
    return XenV1(
        key="xen-v1",
        title=f"Xen {version} pre-copy (migration stream v1: 29 iterations, 3x memory sent "
        "or < 50 pages)",
        source="xen tools/libxc/xc_domain_save.c xc_domain_save",
        setup_s=XEN_SETUP_S,
        suspend_s=XEN_SUSPEND_S,
        restore_s=XEN_RESTORE_S,
        finish_s=XEN_FINISH_S,
    )


def parse_xen_version(text: str, what: str = "Xen", example: str = "4.17") -> tuple[int, int]:
    """``"4.17"`` -> (4, 17); ValueError when it is not MAJOR.MINOR."""
    major, _, minor = text.strip().partition(".")
    if not major.isdigit() or not minor.split(".")[0].isdigit():
        raise ValueError(f"{text!r} is not a {what} version (MAJOR.MINOR, e.g. {example})")
    return int(major), int(minor.split(".")[0])


def parse_qemu_version(text: str) -> tuple[int, int]:
    """``"10.0"`` -> (10, 0); ValueError when it is not MAJOR.MINOR."""
    return parse_xen_version(text, "QEMU", "10.0")
