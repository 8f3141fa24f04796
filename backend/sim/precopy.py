"""Pre-copy live migration: the rounds, with each hypervisor's stop rules (:mod:`.precopy_rules`).

The stages below are Xen 3.x's (libxc ``xc_domain_save``, migration stream v1); Xen >= 4.6
and QEMU run the same stages with their own rules, set-up and switch-over times (QEMU
reads its dirty log before a pass is over: see :class:`~.precopy_rules.Qemu`).

What a migration does, in the order libxc does it:

1. set-up: xl starts ``ssh DEST xl migrate-receive``, the receiver creates the paused
   ``NAME--incoming`` domain and the stream header goes across (``SETUP_S``);
2. live rounds: round 1 sends every page; each later round sends the pages the guest
   dirtied during the round before (the dirty log is read and cleaned at each round's
   end). After each round libxc checks its stop rules (``xc_domain_save.c``)::

       if (iter >= max_iters ||                     /* 29 rounds            */
           sent_this_iter + skip_this_iter < 50 ||  /* almost nothing left  */
           total_sent > max_factor * p2m_size)      /* 3x memory sent       */
           -> last iteration

3. stop-and-copy: the guest is suspended (``SUSPEND_S``), the pages dirtied in the last
   live round are sent with the guest stopped, the receiver rebuilds the domain and,
   after xl's GO handshake, unpauses it on the destination (``RESTORE_S``). The
   downtime is suspend + last round + restore;
4. the source copy is destroyed and xl reports success (``FINISH_S``).

Not modelled: libxc's *skip* optimisation (a page dirtied again before its batch goes
out waits for the next round). With it a RAM dirtier's pages would be skipped round
after round and the live rounds would end in seconds; the study's test 7 (5 min 56 s,
70 s unreachable) is what resending the whole working set every round gives.
Xen 3.1+ also has no rate limit (``RATE_IS_MAX()`` is 0), so that rule is out too.

The stream carries each page with its frame number in batches of up to 1024 pages
(``MAX_BATCH_SIZE``); the receiver reports progress per batch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from backend.sim.memory import PAGE_SIZE, GuestMemory
from backend.sim.precopy_rules import (
    MAX_DOWNTIME_LIMIT_MS,
    QEMU_THROTTLE_PERIOD_S,
    QEMU_THROTTLE_TRIGGER,
    THROTTLE_HELD,
    THROTTLE_RELEASED,
    XEN_FINISH_S,
    XEN_RESTORE_S,
    XEN_SETUP_S,
    XEN_STREAM_BYTES_PER_PAGE,
    XEN_SUSPEND_S,
    Qemu,
    Rules,
    XenV1,
    rules_for,
)

MAX_ITERS = XenV1.max_iters
MAX_FACTOR = XenV1.max_factor
MIN_SENT = XenV1.min_sent
BATCH_PAGES = 1024
STREAM_BYTES_PER_PAGE = XEN_STREAM_BYTES_PER_PAGE
SETUP_S = XEN_SETUP_S
SUSPEND_S = XEN_SUSPEND_S
RESTORE_S = XEN_RESTORE_S
FINISH_S = XEN_FINISH_S


class Stage(enum.Enum):
    SETUP = "setup"
    LIVE = "live"
    SUSPENDING = "suspending"
    LAST = "last"
    RESTORING = "restoring"
    FINISHING = "finishing"
    DONE = "done"
    ABORTED = "aborted"


class Action(enum.Enum):
    """What the rest of the model must do after a step."""

    RECEIVER_READY = "receiver-ready"  # the --incoming domain exists on the destination
    SUSPEND = "suspend"  # the guest stops here
    RESUME = "resume"  # the guest runs again, on the destination
    RESUME_AT_SOURCE = "resume-at-source"  # the destination failed: back where it was
    DONE = "done"  # the source copy is gone


QEMU_DEFAULT_MAX_BANDWIDTH = 32 * 1024 * 1024
"""migration/options.c MAX_THROTTLE: ``max-bandwidth`` when nobody sets it, bytes/s."""


@dataclass
class QemuSettings:
    """What QMP set on the source QEMU (``migrate-set-capabilities``/``-parameters``).

    A migration started with them (the simulated QEMU's ``migrate``) follows them and
    whatever QMP sets while it runs; one started without (a test driving the model, the
    xl-driven experiment) plays miglab's driver's convergence policy itself.
    """

    auto_converge: bool = False
    max_bandwidth: int = QEMU_DEFAULT_MAX_BANDWIDTH
    """Bytes per second."""
    throttle: tuple[int, int, int] = THROTTLE_RELEASED
    """``cpu-throttle-initial``, ``cpu-throttle-increment``, ``max-cpu-throttle``."""


@dataclass(frozen=True)
class Record:
    """One thing that happened during the migration, at simulated time ``t``.

    ``kind`` is one of: ``receiver-ready``, ``stream-start``, ``batch`` (``received``
    pages so far), ``round`` (a round's ``iteration``, ``sent``, ``dirtied``,
    ``duration_s``, ``dom0_pct``, ``guest_pct``), ``last-iteration``, ``suspended``,
    ``memory-saved`` (``total_sent``), ``transfer-complete``, ``resumed``, ``done``,
    ``aborted``; when the destination cannot attach the disk: ``creation-failed``, then
    ``resumed-at-source``. QEMU's policies add ``throttle`` (the new vCPU throttle in
    ``total_sent``, percent) and ``downtime-limit`` (the new limit in ``total_sent``, ms).
    """

    t: float
    kind: str
    received: int = 0
    iteration: int = 0
    sent: int = 0
    dirtied: int = 0
    duration_s: float = 0.0
    dom0_pct: int = 0
    guest_pct: int = 0
    total_sent: int = 0


@dataclass(frozen=True)
class Summary:
    """A finished migration, as the model saw it (xl itself reports none of this)."""

    source: str
    dest: str
    started: float
    ended: float
    downtime_s: float | None
    suspended_at: float | None
    resumed_at: float | None
    rounds: int
    pages_sent: int
    ok: bool
    model: str = "xen-v1"
    """Which rules ran (:attr:`Rules.key`)."""
    bytes_sent: int = 0
    dirty_syncs: int = 0
    """QEMU's ``dirty-sync-count`` (0 for Xen)."""
    max_throttle_pct: int = 0
    downtime_limit_ms: int | None = None
    """QEMU: the limit in force at the end (raise-downtime may have doubled it)."""

    @property
    def total_s(self) -> float:
        return self.ended - self.started


class PreCopy:
    """One migration of the guest from ``source`` to ``dest``."""

    def __init__(
        self,
        source: str,
        dest: str,
        pages: int,
        start: float,
        dest_ready: bool = True,
        rules: Rules | None = None,
        written_pages: int = 0,
        settings: QemuSettings | None = None,
        downtime_limit_ms: int | None = None,
    ) -> None:
        self.source = source
        self.dest_ready = dest_ready
        """Whether the destination can attach the guest's disk (is logged in to it)."""
        self.dest = dest
        self.pages = pages
        self.started = start
        self.rules = rules if rules is not None else rules_for("xen")
        zero = rules.zero_fraction if isinstance(rules, Qemu) else 0.0
        self.zero_pages = max(0.0, zero * pages - written_pages)
        """Pages that are zero when the migration starts: the idle guest's zero part, less
        what its workloads have written (a RAM dirtier's random data is not zero)."""
        self.stage = Stage.SETUP
        self.records: list[Record] = []
        self.iteration = 0
        self.to_send = 0.0
        self.sent = 0.0  # pages sent in the current round
        self.total_sent = 0
        self.bytes_sent = 0.0
        self.received = 0
        self.suspended_at: float | None = None
        self.resumed_at: float | None = None
        self.ended: float | None = None
        # QEMU's counters and miglab's convergence policy acting on them.
        self.syncs = 0
        self.throttle_pct = 0
        self.max_throttle_pct = 0
        rules = self.rules
        self.settings = settings
        """Set over QMP: then QMP, not the model, applies the convergence policy."""
        if downtime_limit_ms is not None:
            self.downtime_limit_ms = downtime_limit_ms
        else:
            self.downtime_limit_ms = rules.downtime_limit_ms if isinstance(rules, Qemu) else 0
        self._high_count = 0
        self._period = (start, 0.0, 0)  # last throttle check: t, bytes sent, pages dirtied
        self._carry = 0.0  # pages of the pass not yet sent when the guest stops (QEMU)
        # For query-migrate: zero pages sent, bytes sent with the guest stopped, the
        # stream's rate, and the last sync's dirty pages and period.
        self.zero_sent = 0.0
        self.downtime_bytes = 0.0
        self.rate_pages = 0.0
        self.last_sync = (start, 0, 0.0)  # t, pages dirtied, period in s
        self._timer = self.rules.setup_s
        self._round_start = start
        self._busy = (0.0, 0.0)  # dom0 and guest core-seconds in the current round
        self._pending_stats: Record | None = None
        self._ready_announced = False
        self._now = start  # where the next segment starts
        self._sync_tick: float | None = None  # QEMU 9.2+: the dirty-sync timer's next tick
        self._tick_syncs = 0  # the sync count at the last tick

    @property
    def _qemu(self) -> bool:
        return isinstance(self.rules, Qemu)

    # -- queries ------------------------------------------------------------------------

    @property
    def sending(self) -> bool:
        """Whether the stream is moving pages now (a live round or the last one)."""
        return self.stage in (Stage.LIVE, Stage.LAST)

    @property
    def finished(self) -> bool:
        return self.stage in (Stage.DONE, Stage.ABORTED)

    @property
    def guest_stopped(self) -> bool:
        return self.stage in (Stage.SUSPENDING, Stage.LAST, Stage.RESTORING)

    @property
    def page_bytes(self) -> float:
        """Bytes on the wire per page of the current round."""
        return self.rules.page_bytes(self)

    def _round_end(self, rate_pages: float) -> float:
        """Pages sent in this round when it ends (QEMU reads its log before the pass ends)."""
        if self.stage is Stage.LAST:
            return self.to_send
        return max(0.0, self.to_send - self.rules.sync_left(self, rate_pages))

    def _ready_delay(self) -> float:
        return self.rules.setup_s * 0.7

    def time_to_boundary(self, rate_pages: float) -> float:
        """Seconds until the next change of stage or round at ``rate_pages`` pages/s."""
        if self.finished:
            return float("inf")
        if self.sending:
            left = self._round_end(rate_pages) - self.sent
            if left <= 1e-9:
                return 0.0
            to_end = left / rate_pages if rate_pages > 0 else float("inf")
            if self._sync_tick is not None and self.stage is Stage.LIVE:
                return min(to_end, max(0.0, self._sync_tick - self._now))
            return to_end
        if self.stage is Stage.SETUP and not self._ready_announced:
            return max(0.0, self._timer - self._ready_delay())
        return self._timer

    def summary(self) -> Summary:
        downtime = None
        if self.suspended_at is not None and self.resumed_at is not None:
            downtime = self.resumed_at - self.suspended_at
        end = self.ended if self.ended is not None else self.started
        return Summary(
            source=self.source,
            dest=self.dest,
            started=self.started,
            ended=end,
            downtime_s=downtime,
            suspended_at=self.suspended_at,
            resumed_at=self.resumed_at,
            rounds=self.iteration,
            pages_sent=self.total_sent,
            ok=self.stage is Stage.DONE,
            model=self.rules.key,
            bytes_sent=round(self.bytes_sent),
            dirty_syncs=self.syncs,
            max_throttle_pct=self.max_throttle_pct,
            downtime_limit_ms=self.downtime_limit_ms if self._qemu else None,
        )

    # -- stepping -----------------------------------------------------------------------

    def advance(
        self,
        t: float,
        dt: float,
        rate_pages: float,
        memory: GuestMemory,
        load: tuple[float, float] = (0.0, 0.0),
    ) -> list[Action]:
        """Let ``dt`` seconds pass from ``t`` (never past :meth:`time_to_boundary`).

        ``rate_pages`` is the stream's share of the network in pages/s; ``load`` how busy
        dom0's and the guest's first vCPU are on the source (0..1, for libxc's per-round
        statistics).
        """
        if self.finished:
            return []
        self._now = t + dt
        self._busy = (self._busy[0] + load[0] * dt, self._busy[1] + load[1] * dt)
        if self.sending:
            return self._send(t, dt, rate_pages, memory)
        self._timer -= dt
        end = t + dt
        if self.stage is Stage.SETUP and not self._ready_announced:
            if self._timer <= self._ready_delay() + 1e-9:
                self._ready_announced = True
                self.records.append(Record(end, "receiver-ready"))
                return [Action.RECEIVER_READY]
            return []
        if self._timer > 1e-9:
            return []
        return self._timer_expired(end, memory)

    def _timer_expired(self, t: float, memory: GuestMemory) -> list[Action]:
        if self.stage is Stage.SETUP:
            self.records.append(Record(t, "stream-start"))
            memory.clean()  # log-dirty mode starts now: only later writes count
            if self._qemu:
                self.syncs = 1  # ram_init_bitmaps: the first sync, every page dirty
                self._period = (t, 0.0, 0)
            self._start_round(t, self.pages)
            return []
        if self.stage is Stage.SUSPENDING:
            self.records.append(Record(t, "suspended"))
            if self._pending_stats is not None:
                self.records.append(replace(self._pending_stats, t=t))
                self._pending_stats = None
            self.stage = Stage.LAST
            if self._qemu:
                self.syncs += 1  # ram_save_complete syncs once more with the guest stopped
            dirtied = memory.clean()
            fresh = dirtied - self._overlap(self._carry, dirtied, memory)
            self._start_round(t, self._carry + fresh, stage=Stage.LAST)
            return []
        if self.stage is Stage.RESTORING and not self.dest_ready:
            # The receiver could not create the domain; xl resumes it where it was.
            self.resumed_at = self.ended = t
            self.stage = Stage.ABORTED
            self.records.append(Record(t, "resumed-at-source"))
            return [Action.RESUME_AT_SOURCE]
        if self.stage is Stage.RESTORING:
            self.resumed_at = t
            self.records.append(Record(t, "resumed"))
            self.stage = Stage.FINISHING
            self._timer = self.rules.finish_s
            if self._timer <= 1e-9:
                self.stage = Stage.DONE
                self.ended = t
                self.records.append(Record(t, "done"))
                return [Action.RESUME, Action.DONE]
            return [Action.RESUME]
        if self.stage is Stage.FINISHING:
            self.stage = Stage.DONE
            self.ended = t
            self.records.append(Record(t, "done"))
            return [Action.DONE]
        return []

    def _start_round(self, t: float, pages: float, stage: Stage = Stage.LIVE) -> None:
        self.stage = stage
        self.iteration += 1
        self.to_send = float(pages)
        self.sent = 0.0
        self._round_start = t
        self._busy = (0.0, 0.0)

    def _send(self, t: float, dt: float, rate_pages: float, memory: GuestMemory) -> list[Action]:
        before = self.sent
        end_at = self._round_end(rate_pages)
        self.sent = min(max(end_at, before), self.sent + rate_pages * dt)
        moved = (self.sent - before) * self.page_bytes
        self.bytes_sent += moved
        self.rate_pages = rate_pages
        if self.stage is Stage.LAST:
            self.downtime_bytes += moved
        elif self.iteration == 1 and self.pages:
            self.zero_sent += (self.sent - before) * self.zero_pages / self.pages
        # One record per full batch crossed, at the moment its last page left.
        first = int(before // BATCH_PAGES) + 1
        last = int(self.sent // BATCH_PAGES)
        for k in range(first, last + 1):
            at = t + (k * BATCH_PAGES - before) / rate_pages if rate_pages > 0 else t + dt
            self.received += BATCH_PAGES
            self.records.append(Record(min(at, t + dt), "batch", received=self.received))
        end = t + dt
        if self.sent < end_at - 1e-9:
            if not self._dirty_sync_tick(end):
                return []
            self.total_sent += round(self.sent)  # a sync in the middle of the pass
            return self._round_done(end, memory, rate_pages)
        tail = round(self.sent) % BATCH_PAGES if self.sent >= self.to_send - 1e-9 else 0
        if tail:
            self.received += tail
            self.records.append(Record(end, "batch", received=self.received))
        self.total_sent += round(self.sent)
        if self.stage is Stage.LAST:
            return self._last_round_done(end)
        return self._round_done(end, memory, rate_pages)

    def _dirty_sync_tick(self, t: float) -> bool:
        """QEMU 9.2+'s dirty-sync timer at ``t``: whether it syncs the bitmap now
        (``cpu_throttle_dirty_sync_timer_tick``: no sync since the last tick, count > 1)."""
        if self._sync_tick is None or self.stage is not Stage.LIVE or t < self._sync_tick - 1e-9:
            return False
        assert isinstance(self.rules, Qemu)
        self._sync_tick += self.rules.dirty_sync_timer_s
        sync = self.syncs > 1 and self.syncs == self._tick_syncs
        self._tick_syncs = self.syncs + (1 if sync else 0)
        return sync

    def _round_stats(self, end: float, dirtied: int) -> Record:
        span = max(end - self._round_start, 1e-6)
        return Record(
            end,
            "round",
            iteration=self.iteration,
            sent=round(self.sent),
            dirtied=dirtied,
            duration_s=span,
            dom0_pct=round(self._busy[0] / span * 100),
            guest_pct=round(self._busy[1] / span * 100),
            total_sent=self.total_sent,
        )

    def _round_done(self, end: float, memory: GuestMemory, rate_pages: float) -> list[Action]:
        left = max(0.0, self.to_send - self.sent)
        dirtied = memory.dirty()
        stats = self._round_stats(end, dirtied)
        if self._qemu:
            self.syncs += 1
            self.last_sync = (end, dirtied, end - self.last_sync[0])
        # QEMU's bitmap is a set: a page written again before it went out is one page.
        fresh = dirtied - self._overlap(left, dirtied, memory)
        stop = self.rules.stop(self, left, round(fresh), rate_pages)
        if not stop:
            if self._qemu:
                self._converge(end, dirtied)
            self.records.append(stats)
            memory.clean()
            self._start_round(end, left + fresh)
            return []
        # libxc prints the round's statistics after it has suspended the guest.
        self._carry = left
        self._pending_stats = stats
        self.records.append(Record(end, "last-iteration"))
        self.stage = Stage.SUSPENDING
        self._timer = self.rules.suspend_s
        self.suspended_at = end
        return [Action.SUSPEND]

    def _overlap(self, left: float, dirtied: int, memory: GuestMemory) -> float:
        """Of ``dirtied`` pages, how many are among the ``left`` not yet sent.

        Both are spread over the same pages (all of memory in the first pass, the working
        sets after), independently: the expected overlap is ``left x dirtied / pages``.
        """
        if left <= 0 or dirtied <= 0:
            return 0.0
        pages = float(self.pages if self.iteration == 1 else memory.used_pages)
        return left * dirtied / max(pages, left, dirtied, 1.0)

    def _converge(self, t: float, dirtied: int) -> None:
        """QEMU's auto-converge trigger and miglab's policy, at a sync that did not stop."""
        rules = self.rules
        assert isinstance(rules, Qemu)
        settings = self.settings
        if settings is None:  # the model plays miglab's driver
            acting = self.syncs > rules.convergence_after_syncs
            if rules.convergence == "raise-downtime" and acting:
                self.downtime_limit_ms = min(self.downtime_limit_ms * 2, MAX_DOWNTIME_LIMIT_MS)
                self.records.append(Record(t, "downtime-limit", total_sent=self.downtime_limit_ms))
            if rules.convergence != "auto-converge":
                return
        elif not settings.auto_converge:
            return
        since, sent_then, dirtied_then = self._period
        if t - since <= QEMU_THROTTLE_PERIOD_S:
            self._period = (since, sent_then, dirtied_then + dirtied)
            return
        dirty_bytes = (dirtied_then + dirtied) * PAGE_SIZE
        sent_bytes = self.bytes_sent - sent_then
        self._period = (t, self.bytes_sent, 0)
        # migration_trigger_throttle starts QEMU 9.2+'s dirty-sync timer (prev count 0).
        if rules.dirty_sync_timer_s > 0 and self._sync_tick is None:
            self._sync_tick = t + rules.dirty_sync_timer_s
            self._tick_syncs = 0
        if dirty_bytes <= sent_bytes * QEMU_THROTTLE_TRIGGER:
            return
        self._high_count += 1
        if self._high_count < 2:
            return
        self._high_count = 0
        if settings is not None:
            initial, increment, most = settings.throttle
        else:
            # The driver releases the throttle after it has seen the sync that acts: from
            # the next sync on.
            released = self.syncs - 1 > rules.convergence_after_syncs
            initial, increment, most = THROTTLE_RELEASED if released else THROTTLE_HELD
        pct = initial if self.throttle_pct == 0 else min(self.throttle_pct + increment, most)
        if pct != self.throttle_pct:
            self.throttle_pct = pct
            self.max_throttle_pct = max(self.max_throttle_pct, pct)
            self.records.append(Record(t, "throttle", total_sent=pct))

    def _last_round_done(self, end: float) -> list[Action]:
        self.records.append(self._round_stats(end, 0))
        self.records.append(Record(end, "memory-saved", total_sent=self.total_sent))
        kind = "transfer-complete" if self.dest_ready else "creation-failed"
        self.records.append(Record(end + self.rules.restore_s * 0.8, kind))
        self.stage = Stage.RESTORING
        self._timer = self.rules.restore_s
        return []

    def abort(self, t: float) -> bool:
        """Stop the migration (xl killed) if the guest has not been suspended yet."""
        if self.stage not in (Stage.SETUP, Stage.LIVE):
            return False
        self._end_aborted(t)
        return True

    def domain_gone(self, t: float) -> None:
        """The domain was destroyed or powered off under the migration.

        Before it runs at the destination the stream breaks; after, the sender has
        already been told of the successful start-up and ends as usual.
        """
        if self.stage is Stage.FINISHING:
            self.stage = Stage.DONE
            self.ended = t
            self.records.append(Record(t, "done"))
        elif self.stage not in (Stage.DONE, Stage.ABORTED):
            self._end_aborted(t)

    def _end_aborted(self, t: float) -> None:
        self.stage = Stage.ABORTED
        self.ended = t
        self.records.append(Record(t, "aborted"))
