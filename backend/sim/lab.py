"""The simulated lab, up: one SSH server per machine, a lab config that points at them.

::

    async with SimulatedLab.start(speed=50, seed=0) as sim:
        sim.lab_config      # a LabConfig: hosts at 127.0.0.1:PORT, root, the sim's key
        sim.targets()       # SshTarget per host and for the guest (plain exec)
        sim.clock           # simulated wall clock, for the probes' parsers
        sim.model           # the model, for what xl does not report (true downtime)

The servers run in this process on loopback ports; keys and known_hosts are written to
a private temporary directory (removed on exit). Its clock follows the wall clock
(``speed`` times as fast); on a :class:`~backend.sim.loop.SimEventLoop` it also waits
whenever this process is busy (:class:`~backend.sim.clock.IdleRuntime`), which makes a
run the same for the same seed (``miglab run --sim``). The guest listens on 127.0.0.2 where
the system allows it (Linux routes all of 127/8 to lo), else on 127.0.0.1.

The hosts play the lab's tools: xl, or QEMU with QMP when lab.toml says ``driver =
"qemu"``; :meth:`SimulatedLab.hypervisor_driver` is the driver to reach them with.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.config import LabConfig
from backend.drivers.base import HypervisorDriver, Publish
from backend.drivers.factories import hypervisor_driver
from backend.drivers.hv_qemu import QemuDriver
from backend.sim.assumptions import ScenarioInputs
from backend.sim.clock import IdleRuntime, WallRuntime
from backend.sim.commands.base import Captured
from backend.sim.labs import build_world, model_for, preparation, storage_driver
from backend.sim.loop import SimEventLoop
from backend.sim.model import Model
from backend.sim.server import USER, SimSshServer
from backend.sim.study import study_lab
from backend.sim.world import World
from backend.transport.base import HostRunner
from backend.transport.ssh import SshTarget
from backend.transport.sshlib import asyncssh

HOST_ADDRESS = "127.0.0.1"
GUEST_ADDRESS = "127.0.0.2"


@dataclass(frozen=True)
class Endpoint:
    """Where one simulated machine answers SSH."""

    name: str
    role: str
    address: str
    port: int


class SimulatedLab:
    """The simulated machines, serving SSH, and the lab config that reaches them."""

    def __init__(
        self,
        source: LabConfig,
        world: World,
        runtime: WallRuntime | IdleRuntime,
        servers: dict[str, SimSshServer],
        directory: Path,
        owns_directory: bool,
        seed: int,
    ) -> None:
        self.source = source
        """The lab that is simulated (the study's, or the one lab.toml describes)."""
        self.world = world
        self.runtime = runtime
        self.servers = servers
        self.directory = directory
        self.seed = seed
        self._owns_directory = owns_directory
        self.lab_config = _lab_config(source, self)

    # -- starting and stopping ------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        lab: LabConfig | None = None,
        *,
        speed: float = 1.0,
        seed: int = 0,
        directory: str | os.PathLike[str] | None = None,
        ports: Mapping[str, int] | None = None,
        scenario: ScenarioInputs | None = None,
    ) -> AsyncIterator[SimulatedLab]:
        """Start the simulated lab of ``lab`` (default: the study's); stop it on exit."""
        sim = await cls.open(
            lab, speed=speed, seed=seed, directory=directory, ports=ports, scenario=scenario
        )
        try:
            yield sim
        finally:
            await sim.close()

    @classmethod
    async def open(
        cls,
        lab: LabConfig | None = None,
        *,
        speed: float = 1.0,
        seed: int = 0,
        directory: str | os.PathLike[str] | None = None,
        ports: Mapping[str, int] | None = None,
        scenario: ScenarioInputs | None = None,
        epoch: float | None = None,
    ) -> SimulatedLab:
        """Start it (see :meth:`start`); ``scenario``: a scenario's own model inputs;
        ``epoch``: the wall time its clock starts at (default: now)."""
        source = lab if lab is not None else study_lab()
        model = model_for(source, seed, scenario)
        runtime: WallRuntime | IdleRuntime
        if isinstance(asyncio.get_running_loop(), SimEventLoop):
            runtime = IdleRuntime(model, speed, epoch)
        else:
            runtime = WallRuntime(model, speed, epoch)
        world = build_world(
            source, runtime, host_address=HOST_ADDRESS, guest_address=_guest_address()
        )
        owns = directory is None
        if directory is None:
            path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="miglab-sim-"))
        else:
            path = Path(directory)
        client_key = asyncssh.generate_private_key("ssh-ed25519", comment="miglab-sim")
        servers: dict[str, SimSshServer] = {}
        try:
            for node in world.nodes.values():
                server = SimSshServer(
                    world,
                    node,
                    asyncssh.generate_private_key("ssh-ed25519"),
                    client_key,
                    node.address,
                    (ports or {}).get(node.name, 0),
                )
                await server.start()
                servers[node.name] = server
            await asyncio.to_thread(_write_keys, path, client_key, servers)
        except BaseException:
            for server in servers.values():
                await server.close()
            if owns:
                await asyncio.to_thread(shutil.rmtree, path, True)
            raise
        sim = cls(source, world, runtime, servers, path, owns, seed)
        runtime.start()
        return sim

    async def close(self) -> None:
        await self.runtime.stop()
        for server in self.servers.values():
            await server.close()
        if self._owns_directory:
            await asyncio.to_thread(shutil.rmtree, self.directory, True)

    # -- what the console needs -----------------------------------------------------------

    @property
    def model(self) -> Model:
        return self.world.model

    @property
    def speed(self) -> float:
        return self.runtime.speed

    @property
    def clock(self) -> Callable[[], float]:
        """Simulated wall-clock seconds: give it to the probes' parsers as ``clock``."""
        return self.runtime.clock

    @property
    def key_path(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        return self.directory / "known_hosts"

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(name, s.node.role, s.address, s.port) for name, s in self.servers.items()]

    def endpoint(self, name: str) -> Endpoint:
        server = self.servers[name]
        return Endpoint(name, server.node.role, server.address, server.port)

    def targets(self) -> dict[str, SshTarget]:
        """An SshTarget for every host and for the guest (by its name), plain exec."""
        return {
            e.name: SshTarget(
                name=e.name,
                address=e.address,
                port=e.port,
                user=USER,
                identity=str(self.key_path),
                known_hosts=str(self.known_hosts_path),
                host_key="strict",
                connect_timeout_s=5.0,
                keepalive_s=5.0,
                plain_exec=True,
            )
            for e in self.endpoints()
        }

    def ssh_command(self, name: str) -> list[str]:
        """The OpenSSH command line that logs in to ``name`` by hand."""
        e = self.endpoint(name)
        return [
            "ssh",
            "-p",
            str(e.port),
            "-i",
            str(self.key_path),
            "-o",
            f"UserKnownHostsFile={self.known_hosts_path}",
            "-o",
            "IdentitiesOnly=yes",
            f"{USER}@{e.address}",
        ]

    async def switch_disk(self, disk: str) -> None:
        """Put the guest's file system on ``"local"`` (its host's disk) or ``"iscsi"``.

        For a disk comparison (the study's analysis 1): the runner's ``switch_disk``.
        """
        if disk not in ("local", "iscsi"):
            raise ValueError(f'disk must be "local" or "iscsi", got {disk!r}')
        self.model.guest_disk = "local" if disk == "local" else "iscsi"

    def hypervisor_driver(
        self, runners: Mapping[str, HostRunner], publish: Publish
    ) -> HypervisorDriver:
        """The lab's hypervisor driver, its waits and times on the simulated clock (the
        QEMU driver sleeps between polls; the Xen driver's times are the event clock's)."""
        lab = self.lab_config
        if lab.hypervisor.driver == "qemu":
            return QemuDriver(
                lab, runners, publish, sleep=self.runtime.sleep, clock=self.runtime.now
            )
        return hypervisor_driver(lab, runners, publish)

    def header(self) -> dict[str, Any]:
        """What a session log's header should say about the simulation."""
        prediction = self.model.params.prediction
        return {
            "simulated": True,
            "simulation": {
                "speed": "max" if math.isinf(self.speed) else self.speed,
                "seed": self.seed,
                "epoch": self.runtime.epoch,
                "simulates": self.source.lab.name,
                "link_mbit": self.source.lab.link_mbit,
                **({"model": prediction.header()} if prediction is not None else {}),
            },
        }


def speed_text(speed: float) -> str:
    """``50``, ``1000`` or ``max`` (the simulated clock bound only by the CPU)."""
    return "max" if math.isinf(speed) else f"{speed:g}"


def _guest_address() -> str:
    """127.0.0.2 when this system can listen there (Linux can), else 127.0.0.1."""
    with socket.socket() as probe:
        try:
            probe.bind((GUEST_ADDRESS, 0))
        except OSError:
            return HOST_ADDRESS
    return GUEST_ADDRESS


def _write_keys(directory: Path, client: asyncssh.SSHKey, servers: dict[str, SimSshServer]) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    key.write_bytes(client.export_private_key())
    key.chmod(0o600)
    (directory / "id_ed25519.pub").write_bytes(client.export_public_key())
    lines = []
    for server in servers.values():
        public = server.host_key.export_public_key().decode().strip()
        lines.append(f"[{server.address}]:{server.port} {public}\n")
    (directory / "known_hosts").write_text("".join(lines))


def _lab_config(source: LabConfig, sim: SimulatedLab) -> LabConfig:
    """``source`` with every machine moved to its simulated SSH server."""
    key, known = str(sim.key_path), str(sim.known_hosts_path)

    def host(name: str) -> dict[str, Any]:
        e = sim.endpoint(name)
        return {
            "address": e.address,
            "port": e.port,
            "user": USER,
            "identity": key,
            "known_hosts": known,
            "connect_timeout_s": 5.0,
            "transport": "plain-exec",  # the simulated hosts are not shells
        }

    names = [source.storage.host, *source.hypervisor.hosts]
    qemu = source.hypervisor.driver == "qemu"
    guest = sim.endpoint(source.guest.name)
    data: dict[str, Any] = {
        "lab": {
            "name": source.lab.name,
            "link_mbit": source.lab.link_mbit,
            "description": f"SIMULATED by miglab (speed {speed_text(sim.speed)}, seed {sim.seed}): "
            + (source.lab.description or source.lab.name),
        },
        "hosts": {name: host(name) for name in names},
        "storage": {
            "host": source.storage.host,
            "driver": storage_driver(source),
            "iqn": source.storage.iqn,
            "device": source.storage.device,
            "portal": str(source.storage.portal),
            "lun": source.storage.lun,
            **(
                {"tgt_control_port": source.storage.tgt_control_port}
                if storage_driver(source) == "tgt" and source.storage.tgt_control_port
                else {}
            ),
        },
        # The hypervisor lab.toml names: xl, or QEMU with its [guest.qemu] (and its
        # downtime limit and convergence policy, which miglab's driver sets over QMP).
        "hypervisor": (
            source.hypervisor.model_dump(exclude_none=True)
            if qemu
            else {
                "driver": "xen",
                "hosts": list(source.hypervisor.hosts),
                "migrate_bandwidth_mbit": source.hypervisor.migrate_bandwidth_mbit,
                "run_dir": source.hypervisor.run_dir,
            }
        ),
        "guest": {
            "name": source.guest.name,
            "address": guest.address,
            "port": guest.port,
            "user": USER,
            "identity": key,
            "known_hosts": known,
            "transport": "plain-exec",
            "vcpus": source.guest.vcpus,
            "memory_mb": source.guest.memory_mb,
            **(
                {"qemu": source.guest.qemu.model_dump(exclude_none=True)}
                if qemu and source.guest.qemu is not None
                else {"config": sim.world.guest_config_path}
            ),
        },
    }
    if data["hypervisor"].get("migrate_bandwidth_mbit") is None:
        data["hypervisor"].pop("migrate_bandwidth_mbit", None)
    return LabConfig.model_validate(data, context={"base_dir": sim.directory})


async def prepare(sim: SimulatedLab) -> list[str]:
    """Export the disk, log both hosts in, boot the guest; returns what went wrong."""
    problems: list[str] = []
    for host, argv in preparation(sim.lab_config):
        out = Captured(sim.runtime)
        code = await sim.world.execute(sim.world.node(host), argv, out)
        if code != 0:
            problems.append(f"{host}: {' '.join(argv)}: exit {code}: {out.text('stderr').strip()}")
    return problems
