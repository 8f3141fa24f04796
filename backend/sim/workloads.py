"""What runs in the simulated guest: its demands on the lab, and what it gets done.

Each workload says what it wants (vCPU cores, iSCSI traffic, a working set of memory it
writes) and, given what the model grants it for a stretch of time, counts its progress
(events, MiB, files, rounds). The programs that print sysbench's or dbench's lines read
that progress; nothing here formats text.

Constants are calibrated on the study (REFERENCE.md, Figure 4.1 and tests 1-7); where the
study gives no number, a value typical of a 2009 dual-core machine is used and said so.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import ClassVar

from backend.sim.memory import PAGES_PER_MIB

# -- sysbench cpu: Figure 4.1, "cpu events 9952.45" with 2 vCPUs, primes to 1000.
SYSBENCH_EPS_PER_VCPU = 9952.45 / 2
SYSBENCH_REFERENCE_PRIME = 1000
# -- sysbench memory: Figure 4.1, 271.73 MB/s of sequential writes. Memory-bound: one
# core already saturates the memory bus, so losing some CPU to dom0 costs nothing.
SYSBENCH_MEMORY_MIB_S = 271.73
MEMORY_SATURATION_CORES = 1.0
# -- dbench, 2 clients: Figure 4.1 (local disk 36.02 MB/s, 154.09 ms; iSCSI 18.96 MB/s,
# 207.91 ms). The study notes 18.96 MB/s is more than a 100 Mbit/s link carries: the
# guest's page cache absorbs part of the work, so dbench's MB/s is a multiple of the
# disk traffic that reaches the target.
DBENCH_LOCAL_MB_S = 36.0246
DBENCH_LOCAL_LATENCY_MS = 154.092
DBENCH_ISCSI_MB_S = 18.9599
DBENCH_ISCSI_LATENCY_MS = 207.913
DBENCH_CACHE_FACTOR = 2.0
"""dbench MB/s per MB/s of iSCSI traffic."""
DBENCH_WRITE_SHARE = 0.7
"""Share of dbench's disk traffic that is writes (the loadfile is write-heavy)."""
ISCSI_BASE_RTT_MS = 1.0
"""One iSCSI command's round trip with nothing queued: initiator, wire, IET, disk.
dbench's clients wait on these (flushes, small synchronous writes), so the disk rate is
a window over this time: a queue on the path slows them at once, which is what halves
dbench during a migration (test 1) while it uses only part of the link."""
DBENCH_WINDOW_KB = DBENCH_ISCSI_MB_S / DBENCH_CACHE_FACTOR * ISCSI_BASE_RTT_MS
"""Bytes in flight (KB = MB/s x ms) that give the study's 18.96 MB/s alone on 100 Mbit/s."""
DBENCH_LATENCY_EXPONENT = math.log(DBENCH_ISCSI_LATENCY_MS / DBENCH_LOCAL_LATENCY_MS) / math.log(
    DBENCH_LOCAL_MB_S / DBENCH_ISCSI_MB_S
)
"""dbench's worst latency grows as (throughput lost)^0.47: the exponent that maps the
study's local-to-iSCSI throughput ratio onto its latency ratio."""
DBENCH_CORES_PER_CLIENT = 0.25
DBENCH_HOT_MIB_PER_CLIENT = 16
DBENCH_DIRTY_PAGES_S = 1200.0
"""Distinct page-cache pages dbench writes per second at the study's throughput (its
files are rewritten over and over, so few distinct pages): half of what 100 Mbit/s
sends, so pre-copy converges, as the study's 1 min 36 s migration did."""
# -- kernel compile (test 6): make -j2 on 2 vCPUs of 2009. The compilers' heaps and
# the page cache of objects make a large, busy working set; calibrated so that the
# last round leaves the guest stopped ~29 s (the study's 29 s unreachable).
BUILD_FILES_PER_CORE_S = 1.2
BUILD_HOT_MIB = 512
BUILD_DIRTY_PAGES_S = 5200.0
BUILD_ISCSI_WRITE_MB_S = 0.4
BUILD_ISCSI_READ_MB_S = 0.2
# -- the RAM dirtier (test 7): dd from /dev/zero into a tmpfs file, one vCPU of memcpy.
DIRTIER_MIB_S = 250.0
TMPFS_SHARE = 0.5
"""tmpfs (``/dev/shm``) holds at most half of RAM by default."""
# -- the guest at rest: kernel threads, timers, daemons' logs.
IDLE_HOT_MIB = 8
IDLE_DIRTY_PAGES_S = 20.0
IDLE_CORES = 0.02


@dataclass
class Grant:
    """What a workload got for a stretch of time."""

    cpu_share: float = 1.0
    """Share of the cores it asked for that it got (the rest went to dom0 or others)."""
    disk_mb_s: float = 0.0
    """iSCSI traffic (MB/s) it got; for local-disk and memory workloads, unused."""
    queue_ms: float = 0.0
    """Queueing delay on its iSCSI path (others' traffic), for its latency."""


@dataclass
class Workload:
    """Something running in the guest since ``started`` (simulated seconds)."""

    kind: ClassVar[str] = "workload"
    noise_sigma: ClassVar[float] = 0.01

    wid: int
    started: float
    alive: bool = True
    noise: float = 1.0
    second: int = -1
    marks: list[tuple[float, float]] = field(default_factory=list)
    """Discrete completions: (time, running count), e.g. files compiled, rounds done."""
    history: list[float] = field(default_factory=list)
    """:meth:`done` at each whole second of its run: ``history[k - 1]`` at second k. The
    programs read these, not the live count, so a line is exact however late the
    program wakes up."""

    def done(self) -> float:
        """How much it has got done so far (events, MiB, files...)."""
        return 0.0

    def cpu_demand(self, vcpus: int) -> float:
        return 0.0

    def region(self) -> tuple[int, float, str] | None:
        """The working set it writes: (pages, distinct page writes per second, pattern)."""
        return None

    def iscsi_demand(self, queue_ms: float) -> tuple[float, float]:
        """iSCSI traffic it would move now, (write MB/s, read MB/s), given the queueing."""
        return 0.0, 0.0

    def region_speed(self, grant: Grant) -> float:
        """How fast it writes its working set, relative to its nominal rate."""
        return grant.cpu_share

    def on_second(self, t: float, rng: random.Random) -> None:
        """A whole second of its run has passed (``t`` exactly): new noise for the next.

        Each benchmark line varies a little; the noise is drawn per second, as the tools
        report per second.
        """
        if t > self.started:
            self.history.append(self.done())
        self.noise = max(0.5, rng.gauss(1.0, self.noise_sigma))

    def advance(self, t: float, dt: float, grant: Grant, vcpus: int) -> None:
        """Count the progress of ``dt`` seconds from ``t`` with ``grant``."""


@dataclass
class SysbenchCpu(Workload):
    """``sysbench cpu``: primes by trial division on every thread; CPU-bound."""

    kind: ClassVar[str] = "sysbench-cpu"
    noise_sigma: ClassVar[float] = 0.012
    threads: int = 1
    max_prime: int = 10000
    events: float = 0.0

    def cpu_demand(self, vcpus: int) -> float:
        return float(min(self.threads, vcpus))

    def region(self) -> tuple[int, float, str] | None:
        return self.threads, 1000.0, "random"  # a stack page per thread

    def done(self) -> float:
        return self.events

    def eps(self, grant: Grant, vcpus: int) -> float:
        cost: float = (SYSBENCH_REFERENCE_PRIME / self.max_prime) ** 1.5
        cores = self.cpu_demand(vcpus) * grant.cpu_share
        return SYSBENCH_EPS_PER_VCPU * cost * cores * self.noise

    def advance(self, t: float, dt: float, grant: Grant, vcpus: int) -> None:
        self.events += self.eps(grant, vcpus) * dt


@dataclass
class SysbenchMemory(Workload):
    """``sysbench memory``: writes a per-thread block over and over; memory-bound."""

    kind: ClassVar[str] = "sysbench-memory"
    noise_sigma: ClassVar[float] = 0.006
    threads: int = 1
    block_kib: int = 1
    mib: float = 0.0
    events: float = 0.0

    def cpu_demand(self, vcpus: int) -> float:
        return float(min(self.threads, vcpus))

    def region(self) -> tuple[int, float, str] | None:
        pages = max(1, self.threads * math.ceil(self.block_kib / 4))
        return pages, 1000.0, "random"

    def done(self) -> float:
        return self.mib

    def rate(self, grant: Grant, vcpus: int) -> float:
        cores = self.cpu_demand(vcpus) * grant.cpu_share
        return SYSBENCH_MEMORY_MIB_S * min(1.0, cores / MEMORY_SATURATION_CORES) * self.noise

    def advance(self, t: float, dt: float, grant: Grant, vcpus: int) -> None:
        moved = self.rate(grant, vcpus) * dt
        self.mib += moved
        self.events += moved * 1024 / self.block_kib


@dataclass
class Dbench(Workload):
    """``dbench N``: a file server's load on the guest's file system.

    On the iSCSI disk its rate is a window of bytes over the iSCSI round trip, capped by
    the link share its traffic gets; on a local disk only the guest itself limits it.
    """

    kind: ClassVar[str] = "dbench"
    noise_sigma: ClassVar[float] = 0.05
    clients: int = 2
    local: bool = False
    mb: float = 0.0
    seconds: list[tuple[float, float, float]] = field(default_factory=list)
    """One entry per second of its run: (time, MB done so far, worst latency in ms)."""
    _last_mb: float = 0.0
    _queue_s: float = 0.0  # queueing delay x time, over the current second

    def cpu_demand(self, vcpus: int) -> float:
        return min(float(vcpus), DBENCH_CORES_PER_CLIENT * self.clients)

    def region(self) -> tuple[int, float, str] | None:
        pages = DBENCH_HOT_MIB_PER_CLIENT * self.clients * PAGES_PER_MIB
        return pages, DBENCH_DIRTY_PAGES_S * self.clients / 2, "random"

    def cpu_bound_mb_s(self) -> float:
        return DBENCH_LOCAL_MB_S * self.clients / 2

    def iscsi_demand(self, queue_ms: float) -> tuple[float, float]:
        if self.local:
            return 0.0, 0.0
        window = DBENCH_WINDOW_KB * self.clients / 2
        disk = window / (ISCSI_BASE_RTT_MS + queue_ms)
        disk = min(disk, self.cpu_bound_mb_s() / DBENCH_CACHE_FACTOR)
        return disk * DBENCH_WRITE_SHARE, disk * (1 - DBENCH_WRITE_SHARE)

    def rate(self, grant: Grant, noisy: bool = True) -> float:
        rate = self.cpu_bound_mb_s() * min(1.0, grant.cpu_share)
        if not self.local:
            rate = min(rate, DBENCH_CACHE_FACTOR * grant.disk_mb_s)
        return rate * self.noise if noisy else rate

    def region_speed(self, grant: Grant) -> float:
        return min(1.0, self.rate(grant, noisy=False) / max(self.cpu_bound_mb_s(), 1e-9))

    def advance(self, t: float, dt: float, grant: Grant, vcpus: int) -> None:
        self.mb += self.rate(grant) * dt
        self._queue_s += grant.queue_ms * dt

    def on_second(self, t: float, rng: random.Random) -> None:
        if t > self.started:
            done, self._last_mb = self.mb - self._last_mb, self.mb
            queue, self._queue_s = self._queue_s, 0.0
            self.seconds.append((t, self.mb, self.latency_ms(done, queue, rng)))
        super().on_second(t, rng)

    def latency_ms(self, mb_s: float, queue_ms: float, rng: random.Random) -> float:
        """The worst operation latency of a second in which dbench moved ``mb_s``."""
        ratio = self.cpu_bound_mb_s() / max(mb_s, 0.05 * self.cpu_bound_mb_s())
        typical: float = DBENCH_LOCAL_LATENCY_MS * ratio**DBENCH_LATENCY_EXPONENT
        # Behind a standing queue the worst case scatters (the study: "latency erratic").
        sigma = 0.08 + min(0.3, 0.2 * queue_ms)
        return typical * math.exp(rng.gauss(0.0, sigma))


@dataclass
class Build(Workload):
    """A kernel compile (``make -jN``): CPU-bound, a large and busy working set."""

    kind: ClassVar[str] = "build"
    noise_sigma: ClassVar[float] = 0.05
    jobs: int = 2
    files: float = 0.0

    def cpu_demand(self, vcpus: int) -> float:
        return float(min(self.jobs, vcpus))

    def region(self) -> tuple[int, float, str] | None:
        return BUILD_HOT_MIB * PAGES_PER_MIB, BUILD_DIRTY_PAGES_S, "random"

    def iscsi_demand(self, queue_ms: float) -> tuple[float, float]:
        return BUILD_ISCSI_WRITE_MB_S, BUILD_ISCSI_READ_MB_S

    def advance(self, t: float, dt: float, grant: Grant, vcpus: int) -> None:
        rate = BUILD_FILES_PER_CORE_S * self.cpu_demand(vcpus) * grant.cpu_share * self.noise
        before = self.files
        self.files += rate * dt
        for k in range(int(before) + 1, int(self.files) + 1):
            self.marks.append((t + (k - before) / rate, float(k)))


@dataclass
class Dirtier(Workload):
    """The RAM dirtier: ``dd`` rewriting a ``size_mib`` tmpfs file, round after round."""

    kind: ClassVar[str] = "dirtier"
    noise_sigma: ClassVar[float] = 0.03
    size_mib: int = 256
    mib: float = 0.0
    mib_s: float = DIRTIER_MIB_S
    """How fast it writes with a vCPU to itself (the lab's ``[simulation] dirtier_mib_s``)."""

    def cpu_demand(self, vcpus: int) -> float:
        return 1.0

    def region(self) -> tuple[int, float, str] | None:
        return self.size_mib * PAGES_PER_MIB, self.mib_s * PAGES_PER_MIB, "sequential"

    def advance(self, t: float, dt: float, grant: Grant, vcpus: int) -> None:
        rate = self.mib_s * min(1.0, grant.cpu_share) * self.noise
        before = self.mib
        self.mib += rate * dt
        size = self.size_mib
        for k in range(int(before // size) + 1, int(self.mib // size) + 1):
            self.marks.append((t + (k * size - before) / rate, float(k)))
