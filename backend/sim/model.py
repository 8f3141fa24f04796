"""The simulated lab's model: one clock, the network, the guest, its workloads, migrations.

Pure Python and deterministic: ``Model(params, seed)`` and ``step()`` (one tick of
``TICK`` simulated seconds) always give the same numbers for the same seed and the same
calls at the same ticks. Nothing here knows about SSH or text formats; the command
programs (``backend/sim/commands``) read the model and print the tools' output.

Each tick is cut into segments at the moments a migration changes stage or round, so
the dirty pages a round finds, the downtime window and the page counts are exact, not
rounded to ticks. Within a segment the shares are constant:

1. network: the migration stream (a bulk TCP flow from source to destination) and the
   guest's iSCSI traffic (writes to and reads from the storage host) share the links
   max-min fairly (:mod:`backend.sim.network`); iSCSI traffic is a window over the
   round trip, so it slows as soon as a migration queues packets on its path;
2. CPU: each host has ``host_cpus`` cores; dom0 takes what the migration (copying and
   sending pages) and the iSCSI initiator cost it, the guest's vCPUs share the rest;
3. memory: the guest's working sets dirty pages (:mod:`backend.sim.memory`);
4. pre-copy advances (:mod:`backend.sim.precopy`).

Calibration (see each module for its constants): an idle 1 GiB guest on 100 Mbit/s
migrates in ~93 s (the study: 96 s); dom0 spends ``DOM0_CORES_PER_MBIT_SENT`` per Mbit/s
sent, so a 94 Mbit/s stream costs 0.32 of 2 cores, the 16 % that sysbench cpu lost in
test 2; ping's base round trip to the guest is Figure 4.1's 0.187 ms.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from backend.config import LabConfig
from backend.sim import workloads as wl
from backend.sim.assumptions import (
    DOM0_CORES_PER_MBIT_SENT,
    Prediction,
    ScenarioInputs,
    assumptions,
)
from backend.sim.memory import PAGES_PER_MIB, GuestMemory
from backend.sim.network import Allocation, Flow, Network, path
from backend.sim.precopy import Action, PreCopy, QemuSettings, Summary
from backend.sim.precopy_rules import Qemu, Rules, rules_for
from backend.sim.workloads import Grant, Workload

TICK = 0.1
"""Simulated seconds per step. Benchmarks report per second and ping's interval is
at least a few ms; sub-tick moments (a 40 ms downtime) are kept exactly anyway."""

DOM0_IDLE_CORES = 0.02
DOM0_CORES_PER_MBIT_RECEIVED = 0.0025
DOM0_CORES_PER_MBIT_ISCSI = 0.002
"""The open-iscsi initiator and blkback, per Mbit/s of the guest's disk traffic."""
PING_GUEST_MS = 0.187
"""Round trip to the guest on an idle network (Figure 4.1, guest on iSCSI: 0.1867)."""
PING_GUEST_LOCAL_DISK_MS = 0.111
"""The same with the guest's disk on its host (Figure 4.1: 0.1109). Calibrated, not
derived: with the disk on iSCSI, dom0 also runs the initiator, and the study's guest
answered ping 68 % slower for it."""
PING_HOST_MS = 0.11
PING_LOOPBACK_MS = 0.03
BOOT_S = 12.0
"""From ``xl create`` to a guest that answers ping and SSH (a 2009 PV guest)."""
SHUTDOWN_S = 4.0
DOM0_MIB = 512
HOST_SPARE_MIB = 512

GuestStatus = Literal["off", "booting", "running", "shutting-down"]


class SimError(Exception):
    """A request the simulated lab refuses, with the reason a real tool would give."""


@dataclass(frozen=True)
class LabParams:
    """What the model needs to know about the lab it simulates."""

    name: str = "ufla-2009"
    link_mbit: float = 100.0
    migrate_mbit: float | None = None
    memory_mib: int = 1024
    vcpus: int = 2
    storage: str = "iSCSIserver"
    hypervisors: tuple[str, str] = ("xenserver1", "xenserver2")
    guest: str = "guest"
    host_cpus: int = 2
    rules: Rules = field(default_factory=lambda: rules_for("xen"))
    """The hypervisor's pre-copy rules (:mod:`backend.sim.precopy_rules`)."""
    dirtier_mib_s: float = wl.DIRTIER_MIB_S
    send_cores_per_mbit: float = DOM0_CORES_PER_MBIT_SENT
    """CPU the sending host spends per Mbit/s of migration stream."""
    sender_cores: float = 1.0
    """QEMU: the CPU its migration thread gets on the sending host (less on a busy host)."""
    prediction: Prediction | None = None
    """Where the rules and inputs came from (a lab's), for the log header."""

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.storage, *self.hypervisors)

    @property
    def host_memory_mib(self) -> int:
        need = DOM0_MIB + self.memory_mib + HOST_SPARE_MIB
        return max(2048, -(-need // 1024) * 1024)

    @classmethod
    def from_lab(cls, lab: LabConfig, scenario: ScenarioInputs | None = None) -> LabParams:
        prediction = assumptions(lab, scenario)
        # miglab's qemu driver always sets max-bandwidth (the lab's cap, else its link).
        qemu = lab.hypervisor.driver == "qemu"
        return cls(
            name=lab.lab.name,
            link_mbit=float(lab.lab.link_mbit),
            migrate_mbit=(
                float(lab.migrate_bandwidth_mbit)
                if qemu or lab.hypervisor.migrate_bandwidth_mbit
                else None
            ),
            rules=prediction.rules,
            dirtier_mib_s=prediction.value("dirtier_mib_s"),
            send_cores_per_mbit=prediction.value("send_cores_per_mbit"),
            sender_cores=prediction.value("sender_cores") if qemu else 1.0,
            prediction=prediction,
            memory_mib=lab.guest.memory_mb,
            vcpus=lab.guest.vcpus,
            storage=lab.storage.host,
            hypervisors=(lab.hypervisor.hosts[0], lab.hypervisor.hosts[1]),
            guest=lab.guest.name,
        )


@dataclass
class Guest:
    """The one guest of the lab: where it runs and in what state."""

    status: GuestStatus = "off"
    host: str | None = None
    domid: int = 0
    ready_at: float = 0.0
    off_at: float = 0.0
    cpu_s: float = 0.0
    booted_at: float = 0.0


@dataclass(frozen=True)
class DomainRow:
    """One line of ``xl list`` on a host."""

    name: str
    domid: int
    mem_mib: int
    vcpus: int
    state: str
    cpu_s: float


@dataclass
class _Shares:
    alloc: Allocation
    migration_bytes: float = 0.0
    grants: dict[int, Grant] = field(default_factory=dict)
    dom0: dict[str, float] = field(default_factory=dict)
    guest_cores: float = 0.0
    speeds: dict[str, float] = field(default_factory=dict)


class Model:
    """The simulated lab; advance it with :meth:`step` or :meth:`advance`."""

    def __init__(self, params: LabParams | None = None, seed: int = 0) -> None:
        self.params = params or LabParams()
        self.seed = seed
        self.rng = random.Random(seed)
        # Queries (ping) draw from their own stream, so asking never shifts the model.
        self.query_rng = random.Random(seed * 1_000_003 + 17)
        self.ticks = 0
        self.network = Network(self.params.hosts, self.params.link_mbit)
        self.memory = GuestMemory(self.params.memory_mib)
        self.guest = Guest()
        self.workloads: dict[int, Workload] = {}
        self.migration: PreCopy | None = None
        self.migrations: list[PreCopy] = []
        self.stops: list[list[float | None]] = []  # [suspended, resumed] windows
        self.guest_disk: Literal["iscsi", "local"] = "iscsi"
        """Where the guest's file system is: the iSCSI LUN, or its host's own disk."""
        self.dom0_cpu_s = {h: 0.0 for h in self.params.hosts}
        self._next_domid = {h: 1 for h in self.params.hosts}
        self._incoming_domid = 0
        self._source_domid = 0
        self._next_wid = 1
        self._shares = _Shares(self.network.allocate([]))
        self._shares_key: object = ()

    # -- time ---------------------------------------------------------------------------

    @property
    def t(self) -> float:
        """Simulated seconds since the model started (a whole number of ticks)."""
        return round(self.ticks * TICK, 9)

    def advance(self, seconds: float) -> None:
        """Step whole ticks until ``seconds`` more have passed."""
        target = self.ticks + round(seconds / TICK)
        while self.ticks < target:
            self.step()

    def step(self) -> None:
        t = self.t
        remaining = TICK
        for _ in range(100_000):
            if remaining <= 1e-12:
                break
            shares = self._shares = self._current_shares()
            seg = remaining
            mig = self.migration
            rate_pages = 0.0
            if mig is not None:
                rate_pages = shares.migration_bytes / mig.page_bytes
                seg = min(seg, max(0.0, mig.time_to_boundary(rate_pages)))
            self._run_segment(t, seg, shares)
            if mig is not None:
                # libxc's statistics show vCPU 0 of each domain: its share of one core.
                load = (
                    min(1.0, shares.dom0.get(mig.source, 0.0)),
                    shares.guest_cores / self.params.vcpus,
                )
                for action in mig.advance(t, seg, rate_pages, self.memory, load):
                    self._apply(action, t + seg, mig)
            t += seg
            remaining -= seg
        else:  # pragma: no cover - a bug, not a state of the lab
            raise RuntimeError("model step did not converge")
        self.ticks += 1
        self._timers()
        now = self.t
        for w in list(self.workloads.values()):
            elapsed = now - w.started
            if abs(elapsed - round(elapsed)) < 1e-6:
                w.on_second(now, self.rng)

    def _run_segment(self, t: float, dt: float, shares: _Shares) -> None:
        for host, cores in shares.dom0.items():
            self.dom0_cpu_s[host] += cores * dt
        if not self.guest_computing:
            return
        self.guest.cpu_s += shares.guest_cores * dt
        self.memory.advance(dt, shares.speeds)
        for w in self.workloads.values():
            w.advance(t, dt, shares.grants.get(w.wid, Grant()), self.params.vcpus)

    def _timers(self) -> None:
        g = self.guest
        # A boot goes on only while the vCPUs run: a migration's downtime delays it.
        if g.status == "booting" and self.guest_computing and self.t >= g.ready_at - 1e-9:
            g.status = "running"
        if g.status == "shutting-down" and self.t >= g.off_at - 1e-9:
            self._power_off()

    # -- shares of the network and the CPUs -----------------------------------------------

    def _migration_cap(self) -> float:
        p = self.params
        mbit = float("inf") if p.migrate_mbit is None else p.migrate_mbit
        mig = self.migration
        if mig is not None and mig.settings is not None:  # QMP's max-bandwidth, bytes/s
            mbit = mig.settings.max_bandwidth * 8 / 1e6
        if isinstance(p.rules, Qemu) and p.send_cores_per_mbit > 0:
            # QEMU sends from one migration thread (no multifd): at most the CPU it gets.
            mbit = min(mbit, p.sender_cores / p.send_cores_per_mbit)
        return mbit * 1e6 / 8

    def _current_shares(self) -> _Shares:
        # The shares depend on who sends what where, not on time: reuse them until that
        # changes (a round starting or ending, a workload starting or stopping).
        mig = self.migration
        key = (
            (mig.source, mig.dest, mig.sending) if mig is not None else None,
            self.guest.host,
            self.guest_computing,
            tuple(self.workloads),
            mig.throttle_pct if mig is not None else 0,
            mig.settings.max_bandwidth if mig is not None and mig.settings is not None else 0,
        )
        if key != self._shares_key:
            self._shares_key = key
            self._shares = self._compute_shares()
        return self._shares

    def _compute_shares(self) -> _Shares:
        p = self.params
        flows: list[Flow] = []
        mig = self.migration
        if mig is not None and mig.sending:
            flows.append(Flow("migration", path(mig.source, mig.dest), self._migration_cap(), True))
        host = self.guest.host
        demands: dict[int, tuple[float, float]] = {}
        iscsi_links: tuple[str, ...] = ()
        if self.guest_computing and host is not None:
            iscsi_links = (*path(host, p.storage), *path(p.storage, host))
            queue = self.network.allocate(flows).path_queue_ms(iscsi_links)
            for w in self.workloads.values():
                write, read = w.iscsi_demand(queue)
                if write > 0 or read > 0:
                    demands[w.wid] = (write, read)
            total_w = sum(d[0] for d in demands.values()) * 1e6
            total_r = sum(d[1] for d in demands.values()) * 1e6
            if total_w > 0:
                flows.append(Flow("iscsi-write", path(host, p.storage), total_w))
            if total_r > 0:
                flows.append(Flow("iscsi-read", path(p.storage, host), total_r))
        alloc = self.network.allocate(flows)
        shares = _Shares(alloc, migration_bytes=alloc.rate("migration"))
        got = 1.0
        for key in ("iscsi-write", "iscsi-read"):
            flow = alloc.flows.get(key)
            if flow is not None and flow.demand > 0:
                got = min(got, alloc.rate(key) / flow.demand)
        iscsi_queue = alloc.path_queue_ms(iscsi_links, exclude=("iscsi-write", "iscsi-read"))
        iscsi_mbit = (alloc.rate("iscsi-write") + alloc.rate("iscsi-read")) * 8 / 1e6
        mig_mbit = shares.migration_bytes * 8 / 1e6
        dom0 = {h: DOM0_IDLE_CORES for h in p.hosts}
        if mig is not None and mig.sending:
            dom0[mig.source] += p.send_cores_per_mbit * mig_mbit
            dom0[mig.dest] += DOM0_CORES_PER_MBIT_RECEIVED * mig_mbit
        if host is not None:
            dom0[host] += DOM0_CORES_PER_MBIT_ISCSI * iscsi_mbit
        # A fast link asks more of dom0 than the host has (0.0034 x 940 Mbit/s = 3.2).
        dom0 = {h: min(float(p.host_cpus), cores) for h, cores in dom0.items()}
        shares.dom0 = dom0
        if not self.guest_computing or host is None:
            return shares
        demand = wl.IDLE_CORES + sum(w.cpu_demand(p.vcpus) for w in self.workloads.values())
        # The guest's threads share its vCPUs; its vCPUs share what dom0 leaves of the
        # host, and at least their fair part: Xen's scheduler shares the cores among all
        # vCPUs that want one (dom0 has one per core).
        fair = p.host_cpus * p.vcpus / (p.host_cpus + p.vcpus)
        free = max(p.host_cpus - dom0[host], fair)
        vcpu_share = min(1.0, p.vcpus / demand)
        host_share = min(1.0, free / min(demand, p.vcpus))
        # QEMU's auto-converge sleeps the vCPUs for throttle % of each time slice.
        running = 1.0 - (mig.throttle_pct / 100 if mig is not None else 0.0)
        cpu_share = vcpu_share * host_share * running
        shares.guest_cores = demand * cpu_share
        dom0[host] = min(dom0[host], p.host_cpus - shares.guest_cores)
        for w in self.workloads.values():
            write, read = demands.get(w.wid, (0.0, 0.0))
            grant = Grant(cpu_share, (write + read) * got, iscsi_queue)
            shares.grants[w.wid] = grant
            shares.speeds[f"w{w.wid}"] = w.region_speed(grant)
        shares.speeds["kernel"] = running
        return shares

    # -- the guest's life -----------------------------------------------------------------

    @property
    def guest_computing(self) -> bool:
        """Whether the guest's vCPUs run (booting or up, and not stopped by a migration)."""
        g = self.guest
        if g.status not in ("booting", "running", "shutting-down"):
            return False
        return not (self.migration is not None and self.migration.guest_stopped)

    @property
    def guest_up(self) -> bool:
        """Booted and not stopped: it answers ping and SSH."""
        return self.guest.status == "running" and self.guest_computing

    def guest_answers_at(self, t: float) -> bool:
        """Whether the guest would answer a packet that reached it at ``t`` (recent past)."""
        g = self.guest
        if g.status in ("off", "shutting-down") or t < g.ready_at - 1e-9:
            return False
        for start, end in reversed(self.stops):
            assert start is not None
            if start <= t and (end is None or t < end):
                return False
            if end is not None and end <= t:
                break
        return True

    def boot(self, host: str) -> int:
        """``xl create`` on ``host``: the guest starts booting; returns its domid."""
        self._need_hypervisor(host)
        g = self.guest
        if g.status != "off":
            raise SimError(f'domain with name "{self.params.guest}" already exists.')
        g.status = "booting"
        g.host = host
        g.domid = self._take_domid(host)
        g.booted_at = self.t
        g.ready_at = self.t + BOOT_S
        g.cpu_s = 0.0
        self.memory = GuestMemory(self.params.memory_mib)
        self.memory.set_region("kernel", wl.IDLE_HOT_MIB * PAGES_PER_MIB, wl.IDLE_DIRTY_PAGES_S)
        return g.domid

    def shutdown(self, host: str) -> float:
        """``xl shutdown``: the guest powers off a few seconds later; returns when."""
        self._guest_on(host)
        if self.guest.status != "shutting-down":
            self.guest.status = "shutting-down"
            self.guest.off_at = self.t + SHUTDOWN_S
        return self.guest.off_at

    def destroy(self, host: str) -> None:
        """``xl destroy``: the guest is gone at once."""
        self._guest_on(host)
        self._power_off()

    def _power_off(self) -> None:
        if self.migration is not None:
            # The domain is gone under xl migrate: the stream breaks.
            self.migration.domain_gone(self.t)
            self.migration = None
        for w in self.workloads.values():
            w.alive = False
        self.workloads.clear()
        self.guest = Guest()

    def _guest_on(self, host: str) -> None:
        if self.guest.status == "off" or self.guest.host != host:
            raise SimError(f"{self.params.guest} is an invalid domain identifier (rc=-6)")

    def _need_hypervisor(self, host: str) -> None:
        # Not a tool's refusal: only the hypervisors have xl (the others answer
        # "command not found"), so this is a bug in the caller.
        if host not in self.params.hypervisors:
            raise ValueError(f"{host} is not a hypervisor host of this lab")

    def _take_domid(self, host: str) -> int:
        domid = self._next_domid[host]
        self._next_domid[host] = domid + 1
        return domid

    # -- workloads ------------------------------------------------------------------------

    def start(self, workload: type[Workload], **options: object) -> Workload:
        """Start a workload in the guest now.

        The guest must be up: a program in the guest prints (and so waits for the guest,
        :meth:`Invocation.guest_running`) before it starts its work; a guest that is not
        up here is a bug in that program, not a refusal a tool would print.
        """
        if not self.guest_up:
            raise RuntimeError("a workload started while the guest is not up")
        if workload is wl.Dirtier:
            options.setdefault("mib_s", self.params.dirtier_mib_s)
        w = workload(wid=self._next_wid, started=self.t, **options)  # type: ignore[arg-type]
        self._next_wid += 1
        self.workloads[w.wid] = w
        w.on_second(self.t, self.rng)
        region = w.region()
        if region is not None:
            pages, rate, pattern = region
            self.memory.set_region(f"w{w.wid}", pages, rate, pattern)  # type: ignore[arg-type]
        return w

    def stop(self, workload: Workload) -> None:
        workload.alive = False
        if self.workloads.pop(workload.wid, None) is not None:
            self.memory.remove_region(f"w{workload.wid}")

    # -- migration ------------------------------------------------------------------------

    def migrate(
        self,
        source: str,
        dest: str,
        dest_ready: bool = True,
        *,
        settings: QemuSettings | None = None,
        downtime_limit_ms: int | None = None,
    ) -> PreCopy:
        """``xl migrate`` on ``source`` to ``dest``: pre-copy starts now.

        Xen migrates a domain as soon as it exists: a guest still booting is running as
        far as the hypervisor knows, and its boot goes on at the destination (later by
        the downtime). ``dest_ready`` False: the destination cannot attach the disk (not
        logged in); the copy goes all the way, then the guest resumes on the source.
        ``settings`` and ``downtime_limit_ms``: what QMP set on the source QEMU.

        Callers (the simulated xl) pick a destination other than the source and run one
        migration at a time; anything else is a bug in the caller, not a refusal of Xen.
        """
        self._need_hypervisor(dest)
        self._guest_on(source)
        if source == dest:
            raise ValueError("a migration needs two hosts")
        if self.migration is not None:
            raise ValueError("one migration at a time")
        # The idle guest's own writes are part of its measured zero fraction; the
        # workloads' working sets hold data of their own.
        written = sum(r.pages for name, r in self.memory.regions.items() if name != "kernel")
        mig = PreCopy(
            source,
            dest,
            self.memory.pages,
            self.t,
            dest_ready,
            self.params.rules,
            written,
            settings,
            downtime_limit_ms,
        )
        self.migration = mig
        self.migrations.append(mig)
        return mig

    def abort_migration(self) -> bool:
        """xl was stopped: before the suspend the guest stays on the source."""
        mig = self.migration
        if mig is None or not mig.abort(self.t):
            return False
        self.migration = None
        return True

    def _apply(self, action: Action, t: float, mig: PreCopy) -> None:
        if action is Action.RECEIVER_READY:
            self._incoming_domid = self._take_domid(mig.dest)
        elif action is Action.SUSPEND:
            self.stops.append([t, None])
        elif action is Action.RESUME:
            self._resume(t)
            self._source_domid = self.guest.domid
            self.guest.host = mig.dest
            self.guest.domid = self._incoming_domid
        elif action is Action.RESUME_AT_SOURCE:
            self._resume(t)
            self.migration = None
            self._incoming_domid = 0
        elif action is Action.DONE:
            self.migration = None
            self._incoming_domid = 0

    def _resume(self, t: float) -> None:
        window = self.stops[-1]
        # Until the hypervisor announces the guest, the switch sends its packets to the
        # old port (QEMU's announce; Xen's is within its restore time).
        mig = self.migration
        window[1] = t + (mig.rules.announce_s if mig is not None else 0.0)
        if self.guest.status == "booting":
            assert window[0] is not None
            self.guest.ready_at += t - window[0]  # the boot stood still while stopped

    def last_migration(self) -> Summary | None:
        return self.migrations[-1].summary() if self.migrations else None

    # -- what the tools see ---------------------------------------------------------------

    def echo_rtt_ms(self, src: str | None, dst: str | None, sent: float) -> float | None:
        """Round trip of a ping sent at ``sent`` from ``src`` to ``dst``, or None (lost).

        A host name, or None for the guest (its packets go through the NIC of the host it
        runs on). The guest answers only while it runs; queues on the links add up.
        """
        q = self.query_rng
        if (src is None or dst is None) and not self.guest_answers_at(sent):
            return None
        guest_host = self.guest.host
        a = guest_host if src is None else src
        b = guest_host if dst is None else dst
        assert a is not None and b is not None
        if a == b:
            return PING_LOOPBACK_MS * q.uniform(0.8, 1.2)
        if src is not None and dst is not None:
            base = PING_HOST_MS
        elif self.guest_disk == "local":
            base = PING_GUEST_LOCAL_DISK_MS
        else:
            base = PING_GUEST_MS
        queue = self._shares.alloc.path_queue_ms((*path(a, b), *path(b, a)))
        return base * q.uniform(0.9, 1.15) + queue * q.uniform(0.4, 1.3)

    def domains(self, host: str) -> list[DomainRow]:
        """``xl list`` on ``host``."""
        p = self.params
        rows = [DomainRow("Domain-0", 0, DOM0_MIB, p.host_cpus, "r-----", self.dom0_cpu_s[host])]
        g, mig = self.guest, self.migration

        def row(name: str, domid: int, state: str, cpu_s: float) -> None:
            rows.append(DomainRow(name, domid, p.memory_mib, p.vcpus, state, cpu_s))

        if g.status != "off":
            if mig is not None and mig.resumed_at is not None:
                # After GO: the guest runs on the destination; the source keeps its
                # suspended copy, renamed, until xl destroys it.
                if host == mig.source:
                    row(f"{p.guest}--migratedaway", self._source_domid, "---ss-", g.cpu_s)
                if host == mig.dest:
                    row(p.guest, g.domid, self._run_state(), 0.0)
            else:
                if g.host == host:
                    stopped = mig is not None and mig.guest_stopped
                    row(p.guest, g.domid, "---ss-" if stopped else self._run_state(), g.cpu_s)
                if mig is not None and mig.dest == host and self._incoming_domid:
                    row(f"{p.guest}--incoming", self._incoming_domid, "--p---", 0.0)
        return sorted(rows, key=lambda r: r.domid)

    def _run_state(self) -> str:
        if self.guest.status == "shutting-down":
            return "---s--"
        busy = sum(w.cpu_demand(self.params.vcpus) for w in self.workloads.values())
        return "r-----" if busy >= 0.5 else "-b----"

    def free_memory_mib(self, host: str) -> int:
        used = DOM0_MIB + sum(r.mem_mib for r in self.domains(host) if r.domid != 0)
        return self.params.host_memory_mib - used
