"""Run one migration experiment on the simulated lab, on the virtual clock, without SSH.

The same programs the SSH hosts run (ping, sysbench, dbench, xl, QEMU...) run here on a
:class:`~backend.sim.clock.VirtualRuntime`, so a six-minute migration takes a fraction
of a second and the result depends only on the lab, the seed and the schedule. Each
program's output is kept line by line with the simulated time it was printed, ready
for the probes' parsers (:func:`parse`, whose clock is that time, as it would be live).
A Xen lab migrates with ``xl migrate``; a QEMU lab with miglab's own qemu driver, its QMP
going to the simulated QEMUs (:mod:`backend.sim.direct`).

This is what the fidelity tests drive, and a quick way to predict a migration::

    outcome = await run_experiment(Experiment(workloads=[sysbench_cpu_command(...)]))
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from backend.config import LabConfig
from backend.drivers.base import MigrationOutcome
from backend.drivers.hv_qemu import QemuDriver
from backend.events import Event, Sample
from backend.probes.base import LineParser, ParserFactory
from backend.sim.assumptions import ScenarioInputs
from backend.sim.clock import VirtualRuntime
from backend.sim.commands.base import Captured
from backend.sim.direct import DirectRunner
from backend.sim.labs import build_world, model_for, preparation
from backend.sim.precopy import Summary
from backend.sim.study import study_lab
from backend.sim.world import Node, World


@dataclass
class Experiment:
    """What to run: workloads in the guest, probes on hosts, a timeline, a migration."""

    lab: LabConfig | None = None
    seed: int = 0
    workloads: Sequence[Sequence[str]] = ()
    """argv of each program started in the guest once it is up."""
    probes: Sequence[tuple[str, Sequence[str]]] = ()
    """(host, argv) of each probe; a host name, or ``"guest"`` for the guest."""
    warmup_s: float = 0.0
    baseline_s: float = 60.0
    after_s: float = 60.0
    migrate: bool = True
    xl_verbose: bool = True
    scenario: ScenarioInputs | None = None
    """A scenario's own ``[simulation]`` inputs, over the lab's."""


@dataclass
class Outcome:
    """What happened: every program's output, the migration, the simulated clock."""

    epoch: float
    workloads: list[Captured] = field(default_factory=list)
    probes: list[Captured] = field(default_factory=list)
    xl: Captured | None = None
    xl_exit: int | None = None
    qemu: tuple[MigrationOutcome, list[Event]] | None = None
    """A QEMU lab's migration: miglab's qemu driver's outcome and the events it published."""
    migration: Summary | None = None
    started: float = 0.0
    """Simulated seconds at which ``xl migrate`` was started."""

    def wall(self, t: float) -> float:
        return self.epoch + t

    @property
    def window(self) -> tuple[float, float]:
        """The migration as simulated wall-clock times (xl started, xl done)."""
        assert self.migration is not None
        return self.wall(self.migration.started), self.wall(self.migration.ended)


async def run_experiment(exp: Experiment) -> Outcome:
    lab = exp.lab or study_lab()
    model = model_for(lab, exp.seed, exp.scenario)
    runtime = VirtualRuntime(model)
    world = build_world(lab, runtime)
    outcome = Outcome(epoch=runtime.epoch)

    async def scenario() -> None:
        for host, argv in preparation(lab):
            out = Captured(runtime)
            code = await world.execute(world.node(host), argv, out)
            if code != 0:
                raise RuntimeError(f"{host}: {argv}: exit {code}: {out.text('stderr')}")
        while not model.guest_up:
            await runtime.sleep(1.0)
        tasks = [
            _spawn(world, runtime, world.resolve(host) or world.node(host), argv, outcome.probes)
            for host, argv in exp.probes
        ]
        tasks += [
            _spawn(world, runtime, world.guest, argv, outcome.workloads) for argv in exp.workloads
        ]
        await runtime.sleep(exp.warmup_s + exp.baseline_s)
        if exp.migrate and lab.hypervisor.driver == "qemu":
            outcome.started = model.t
            outcome.qemu = await _qemu_migration(lab, world, runtime)
            outcome.migration = model.last_migration()
        elif exp.migrate:
            source, dest = lab.hypervisor.hosts
            argv = ["xl", *(["-v"] if exp.xl_verbose else []), "migrate", lab.guest.name, dest]
            outcome.xl = Captured(runtime)
            outcome.started = model.t
            outcome.xl_exit = await world.execute(world.node(source), argv, outcome.xl)
            outcome.migration = model.last_migration()
        await runtime.sleep(exp.after_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    await runtime.run(scenario())
    return outcome


async def _qemu_migration(
    lab: LabConfig, world: World, runtime: VirtualRuntime
) -> tuple[MigrationOutcome, list[Event]]:
    """Migrate with miglab's own qemu driver, over QMP to the simulated QEMUs."""
    events: list[Event] = []
    runners = {host: DirectRunner(world, world.node(host)) for host in lab.hypervisor.hosts}
    driver = QemuDriver(lab, runners, events.append, sleep=runtime.sleep, clock=runtime.now)
    source, dest = lab.hypervisor.hosts
    try:
        return await driver.migrate(source, dest), events
    finally:
        for runner in runners.values():
            await runner.close()


def _spawn(
    world: World,
    runtime: VirtualRuntime,
    node: Node,
    argv: Sequence[str],
    sink: list[Captured],
) -> asyncio.Task[int]:
    out = Captured(runtime)
    sink.append(out)
    return runtime.spawn(world.execute(node, list(argv), out))


def parse(
    factory: ParserFactory, captured: Captured, epoch: float, host: str = "sim"
) -> list[Sample]:
    """Feed a program's stdout to a probe parser whose clock is each line's print time."""
    now = [epoch]
    parser: LineParser = factory(host, lambda: now[0])
    samples: list[Sample] = []
    for t, stream, line in captured.lines:
        if stream != "stdout":
            continue
        now[0] = epoch + t
        samples.extend(parser.feed(line))
    samples.extend(parser.finish())
    return samples
