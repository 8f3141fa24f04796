"""`miglab sandbox up|down|status`: a real three-host lab on this machine.

``up`` checks the machine (root, programs), builds or finds the guest image, then makes
the network (:mod:`~backend.sandbox.network`), starts tgtd with the shared disk and an
sshd per namespace (:mod:`~backend.sandbox.services`), and writes lab.toml
(:mod:`~backend.sandbox.lab_file`). Every object is recorded in the state file
(:mod:`~backend.sandbox.state`) as soon as it exists; ``down`` removes exactly what is
recorded, and ``up`` after a crashed run starts with a ``down`` of what that run left.
It does not boot the guest: the qemu driver does that from lab.toml.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from backend.drivers.parse_iscsiadm import by_path
from backend.drivers.qemu_argv import kernel_cmdline
from backend.events import Event
from backend.sandbox import netns as ip
from backend.sandbox import preflight
from backend.sandbox.guest_qemu import guest_qemu
from backend.sandbox.lab_file import GUEST_NAME, XEN_GUEST_VCPUS, LabSpec, iqn, write_lab_file
from backend.sandbox.lab_guest import build_lab_guest, ensure_guest_host_key, fetch_dropbear
from backend.sandbox.layout import SandboxLayout
from backend.sandbox.network import (
    HOSTS,
    HYPERVISORS,
    MAX_INSTANCE,
    TAP,
    SandboxNetwork,
    build_network,
    instance_conflicts,
)
from backend.sandbox.processes import ProcessRecord, is_running, start_time, stop
from backend.sandbox.services import (
    ISCSI_PORT,
    TGT_LUN,
    ensure_disk,
    ensure_keypair,
    export_disk,
    known_hosts_line,
    remove_tgt_socket_files,
    start_sshd,
    start_tgtd,
    stop_tgtd,
    tgt_port_in_use,
    wait_for_ssh,
    wait_for_tgtd,
)
from backend.sandbox.state import (
    LinkRecord,
    NetnsRecord,
    SandboxState,
    TgtRecord,
    load_state,
    remove_state,
    save_state,
    state_path,
)
from backend.sandbox.xen_host import (
    XL_CONFIG,
    dom0_mac,
    guest_xl_config,
    start_xen_host,
    wait_for_dom0,
    write_dom0_file,
    xen_host_argv,
)
from backend.sandbox.xen_image import (
    DOM0_KERNEL_PACKAGE,
    DOMU_DISK,
    DOMU_KERNEL,
    DOMU_MODULES,
    DOMU_RAMDISK,
    XENBR,
    Dom0Keys,
    XenHostImage,
    build_dom0_image,
)
from backend.transport.base import CommandFailed
from backend.transport.local import LocalRunner

DEFAULT_LINK_MBIT = 100  # the study's switch
DEFAULT_GUEST_MB = 256  # the study's had 1024; 256 migrates in ~10 s over 100 Mbit/s
MIN_GUEST_MB = 128  # kernel + an initramfs with sysbench's libraries and dbench's load file
DISK_MB = 1024
TGT_PORT_BASE = 6200  # tgtd control port of instance N: 6200 + N

Progress = Callable[[str], object]
HypervisorKind = Literal["qemu", "xen"]
GUEST_ARP_NOTIFY = "sysctl.net.ipv4.conf.all.arp_notify=1"  # a kernel argument (Linux 5.8+)
HYPERVISOR_KINDS: tuple[HypervisorKind, ...] = ("qemu", "xen")


class SandboxError(RuntimeError):
    """`up` or `down` could not finish; the message says what and where."""


class SandboxBusy(SandboxError):
    """Another `miglab sandbox` command works on the same directory."""


class PreflightFailed(SandboxError):
    """Not root, or programs missing: bad input (exit 2), nothing was touched."""

    def __init__(self, result: preflight.Preflight) -> None:
        super().__init__(result.message())
        self.result = result


@dataclass
class SandboxStatus:
    directory: str
    up: bool  # built completely and everything recorded is still there
    phase: str  # "down", "building" (an `up` runs or crashed), "up"
    lab_file: str | None = None
    prefix: str | None = None
    addresses: dict[str, str] = field(default_factory=dict)
    netns: dict[str, bool] = field(default_factory=dict)
    links: dict[str, bool] = field(default_factory=dict)
    processes: dict[str, bool] = field(default_factory=dict)  # role (pid N) -> running
    link_mbit: int | None = None
    guest_mb: int | None = None
    up_seconds: float | None = None
    hypervisor: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _say_nothing(_message: str) -> None:
    pass


def _no_events(_event: Event) -> None:
    pass


def _same_link(info: dict[str, Any], record: LinkRecord) -> bool:
    return ip.link_kind(info) == record.kind and info.get("ifindex") == record.ifindex


class Sandbox:
    """The sandbox kept in ``directory`` (see :class:`SandboxLayout`)."""

    def __init__(
        self,
        directory: Path,
        *,
        progress: Progress | None = None,
        publish: Callable[[Event], None] | None = None,
    ) -> None:
        self.layout = SandboxLayout(directory)
        self.say: Progress = progress or _say_nothing
        self.runner = LocalRunner("sandbox", publish or _no_events)

    # -- up ------------------------------------------------------------------------------

    async def up(
        self,
        *,
        link_mbit: int = DEFAULT_LINK_MBIT,
        guest_mb: int = DEFAULT_GUEST_MB,
        hypervisor: HypervisorKind = "qemu",
    ) -> SandboxState:
        """Build the lab (cleaning up a crashed run first); its recorded state.
        ``hypervisor="xen"``: the two hosts are Xen hosts (QEMU VMs, see
        :mod:`backend.sandbox.xen_host`) instead of namespaces."""
        if hypervisor not in HYPERVISOR_KINDS:
            raise ValueError(f"hypervisor must be one of {HYPERVISOR_KINDS}, got {hypervisor!r}")
        if link_mbit < 1:
            raise ValueError(f"link_mbit must be at least 1, got {link_mbit}")
        if guest_mb < MIN_GUEST_MB:
            raise ValueError(f"guest_mb must be at least {MIN_GUEST_MB}, got {guest_mb}")
        checked = await asyncio.to_thread(preflight.check)
        if not checked.ok:
            raise PreflightFailed(checked)
        started = time.monotonic()
        async with self._locked(create=True):
            old = await self._load()
            if old is not None:
                same = (
                    old.link_mbit == link_mbit
                    and old.guest_mb == guest_mb
                    and old.hypervisor == hypervisor
                )
                if same and (await self._status(old)).up:
                    self.say(f"sandbox {old.prefix} is already up ({self.layout.lab_file})")
                    return old
                self.say(f"taking down what the previous run left ({old.prefix}, {old.phase})")
                await self._teardown(old)
            if hypervisor == "xen":
                return await self._build_xen(link_mbit, guest_mb, old, started)
            return await self._build(link_mbit, guest_mb, old, started)

    async def _directories_and_programs(self, *names: str) -> dict[str, str]:
        """Make the sandbox's private directories; the path of each program (its name when
        not found: preflight has already said what is missing)."""
        layout = self.layout
        for directory in (layout.keys, layout.logs, layout.run_dir):
            await asyncio.to_thread(directory.mkdir, mode=0o700, parents=True, exist_ok=True)
        return await asyncio.to_thread(lambda: {p: preflight.which(p) or p for p in names})

    async def _new_state(
        self,
        old: SandboxState | None,
        link_mbit: int,
        guest_mb: int,
        hypervisor: HypervisorKind,
    ) -> tuple[SandboxNetwork, SandboxState]:
        """A free instance (the crashed run's, if any) and its state, saved before anything
        is made, so that a crash from here on is cleaned up by the next run."""
        net = await self._free_instance(old.instance if old is not None else None)
        state = SandboxState(
            instance=net.instance,
            prefix=net.prefix,
            subnet=str(net.subnet),
            link_mbit=link_mbit,
            guest_mb=guest_mb,
            hypervisor=hypervisor,
            started_at=time.time(),
        )
        await save_state(self.layout.root, state)
        return net, state

    async def _mark_up(
        self, state: SandboxState, lab_path: Path, started: float, what: str
    ) -> SandboxState:
        state.phase = "up"
        state.lab_file = str(lab_path)
        state.up_seconds = round(time.monotonic() - started, 2)
        await save_state(self.layout.root, state)
        self.say(f"sandbox {state.prefix}{what} is up in {state.up_seconds:.1f} s: {lab_path}")
        return state

    async def _build(
        self, link_mbit: int, guest_mb: int, old: SandboxState | None, started: float
    ) -> SandboxState:
        layout, runner, say = self.layout, self.runner, self.say
        programs = await self._directories_and_programs(
            "sshd", "tgtd", "sysbench", "dbench", "qemu-system-x86_64"
        )

        # Keys, the guest image and the disk first: a slow first build makes no network.
        client_public = await ensure_keypair(runner, layout.client_key, "miglab-sandbox-client")
        await asyncio.to_thread(layout.authorized_keys.write_text, client_public + "\n")
        roots = await fetch_dropbear(layout.guest_cache, say)
        guest_public = await ensure_guest_host_key(runner, roots, layout.guest_host_key)
        image = await build_lab_guest(
            layout.guest_cache,
            dropbear_roots=roots,
            client_public_key=client_public,
            host_key=layout.guest_host_key,
            sysbench=Path(programs["sysbench"]),
            dbench=Path(programs["dbench"]),
            progress=say,
        )
        if await ensure_disk(runner, layout.disk, DISK_MB):
            say(f"made the shared disk {layout.disk} ({DISK_MB} MiB, ext4)")
        qemu = await guest_qemu(layout.qemu_cache, programs["qemu-system-x86_64"], say)
        say(f"guest QEMU {qemu.version} ({qemu.origin}): {qemu.binary}")

        net, state = await self._new_state(old, link_mbit, guest_mb, "qemu")
        try:
            host_keys = await self._start(state, net, programs, link_mbit)
            lines = [known_hosts_line(net.address(h), key) for h, key in host_keys.items()]
            lines.append(known_hosts_line(str(net.guest_interface.ip), guest_public))
            await asyncio.to_thread(layout.known_hosts.write_text, "\n".join(lines) + "\n")
            spec = LabSpec(
                net=net,
                layout=layout,
                image=image,
                link_mbit=link_mbit,
                guest_mb=guest_mb,
                tgt_control_port=TGT_PORT_BASE + net.instance,
                qemu_binary=qemu.binary,
                qemu_version=qemu.release,
            )
            lab_path, _ = await write_lab_file(spec)
        except BaseException:
            say("up failed: taking down what it made")
            with contextlib.suppress(Exception):
                await self._teardown(state)
            raise
        return await self._mark_up(state, lab_path, started, "")

    async def _start(
        self,
        state: SandboxState,
        net: SandboxNetwork,
        programs: dict[str, str],
        link_mbit: int,
        *,
        ssh_hosts: tuple[str, ...] = HOSTS,
    ) -> dict[str, str]:
        """Network, tgtd, sshds (in ``ssh_hosts``' namespaces), each recorded in
        ``state``; the hosts' public SSH keys. Without host1 and host2 in ``ssh_hosts``
        their addresses are left to the Xen hosts' dom0s."""
        layout, runner = self.layout, self.runner

        async def record(what: str, name: str, kind: str | None) -> None:
            if what == "netns":
                inode = await ip.netns_inode(name)
                if inode is None:
                    raise SandboxError(f"namespace {name} vanished right after it was made")
                state.netns.append(NetnsRecord(name=name, inode=inode))
            else:
                info = await ip.link_info(runner, name)
                if not info:
                    raise SandboxError(f"link {name} vanished right after it was made")
                link = {"name": name, "kind": kind, "ifindex": info["ifindex"]}
                state.links.append(LinkRecord.model_validate(link))
            await save_state(layout.root, state)

        async def keep(process: ProcessRecord) -> None:
            state.processes.append(process)
            await save_state(layout.root, state)

        hosts_in_vms = not set(HOSTS) <= set(ssh_hosts)
        await build_network(runner, net, link_mbit, record, self.say, hosts_in_vms=hosts_in_vms)

        port = TGT_PORT_BASE + net.instance
        self.say(f"tgtd on {net.address('storage')} (control port {port}): {layout.disk}")
        tgtd, socket_files = await start_tgtd(
            runner,
            programs["tgtd"],
            netns=net.netns("storage"),
            portal=net.address("storage"),
            port=port,
            log=layout.logs / "tgtd.log",
        )
        state.tgt = TgtRecord(control_port=port, socket_files=socket_files)
        await keep(tgtd)
        await wait_for_tgtd(runner, tgtd, port)
        await export_disk(runner, port, iqn(net), layout.disk)

        self.say("sshd in " + ", ".join(f"{h} ({net.address(h)})" for h in ssh_hosts))
        sshds = []
        host_keys: dict[str, str] = {}
        for host in ssh_hosts:
            directory = layout.host_dir(host)
            await asyncio.to_thread(directory.mkdir, mode=0o700, parents=True, exist_ok=True)
            sshd, host_keys[host] = await start_sshd(
                runner,
                programs["sshd"],
                host=host,
                netns=net.netns(host),
                address=net.address(host),
                directory=directory,
                authorized_keys=layout.authorized_keys,
                log=layout.logs / f"sshd-{host}.log",
            )
            await keep(sshd)
            sshds.append((sshd, net.address(host)))
        await asyncio.gather(*(wait_for_ssh(sshd, address) for sshd, address in sshds))
        return host_keys

    # -- the Xen lab --------------------------------------------------------------------

    async def _xen_images(self) -> tuple[XenHostImage, str, str]:
        """The guest and dom0 images (cached); the guest's and dom0s' public host keys."""
        layout, runner, say = self.layout, self.runner, self.say
        programs = await asyncio.to_thread(
            lambda: {p: preflight.which(p) or p for p in ("sysbench", "dbench")}
        )
        client_public = await ensure_keypair(runner, layout.client_key, "miglab-sandbox-client")
        await asyncio.to_thread(layout.authorized_keys.write_text, client_public + "\n")
        roots = await fetch_dropbear(layout.guest_cache, say)
        guest_public = await ensure_guest_host_key(runner, roots, layout.guest_host_key)
        say("guest image (PVH domU: Debian's generic kernel, Xen frontends)")
        domu = await build_lab_guest(
            layout.guest_cache,
            dropbear_roots=roots,
            client_public_key=client_public,
            host_key=layout.guest_host_key,
            sysbench=Path(programs["sysbench"]),
            dbench=Path(programs["dbench"]),
            progress=say,
            disk_device=DOMU_DISK,
            modules=DOMU_MODULES,
            kernel_package=DOM0_KERNEL_PACKAGE,
        )
        # One host key for both dom0s (made once, kept): each dom0's known_hosts names
        # the other by address pattern, so `xl migrate`'s ssh works either way.
        host_key = layout.keys / "dom0_host_ed25519"
        dom0_client = layout.keys / "dom0_client_ed25519"
        keys = Dom0Keys(
            host_key=host_key,
            host_public=await ensure_keypair(runner, host_key, "miglab-sandbox-dom0"),
            client_key=dom0_client,
            client_public=await ensure_keypair(runner, dom0_client, "miglab-sandbox-dom0-root"),
            console_public=client_public,
        )
        image = await build_dom0_image(layout.guest_cache, keys=keys, domu=domu, progress=say)
        return image, guest_public, keys.host_public

    async def _build_xen(
        self, link_mbit: int, guest_mb: int, old: SandboxState | None, started: float
    ) -> SandboxState:
        layout, runner, say = self.layout, self.runner, self.say
        programs = await self._directories_and_programs("sshd", "tgtd", "qemu-system-x86_64")
        image, guest_public, dom0_public = await self._xen_images()
        if await ensure_disk(runner, layout.disk, DISK_MB):
            say(f"made the shared disk {layout.disk} ({DISK_MB} MiB, ext4)")

        net, state = await self._new_state(old, link_mbit, guest_mb, "xen")
        try:
            host_keys = await self._start(state, net, programs, link_mbit, ssh_hosts=("storage",))
            lines = [known_hosts_line(net.address(h), key) for h, key in host_keys.items()]
            lines += [known_hosts_line(net.address(h), dom0_public) for h in HYPERVISORS]
            lines.append(known_hosts_line(str(net.guest_interface.ip), guest_public))
            await asyncio.to_thread(layout.known_hosts.write_text, "\n".join(lines) + "\n")
            await self._start_xen_hosts(state, net, image, programs["qemu-system-x86_64"])
            config = guest_xl_config(
                name=GUEST_NAME,
                memory_mb=guest_mb,
                vcpus=XEN_GUEST_VCPUS,
                kernel=DOMU_KERNEL,
                ramdisk=DOMU_RAMDISK,
                cmdline=kernel_cmdline(
                    ip=str(net.guest_interface),
                    gateway=str(net.root_interface.ip),
                    hostname=GUEST_NAME,
                    # Xen moves no MAC for the guest (QEMU announces it): with arp_notify
                    # netfront's resume sends a gratuitous ARP, else the bridges keep the
                    # old port until the guest's own ARP re-probe (~20 s unreachable).
                    extra=[GUEST_ARP_NOTIFY],
                ).replace("console=ttyS0", "console=hvc0"),
                disk=by_path(net.address("storage"), ISCSI_PORT, iqn(net), TGT_LUN),
                mac=net.guest_mac,
                bridge=XENBR,
            )
            for host in HYPERVISORS:
                await write_dom0_file(
                    runner,
                    net.address(host),
                    XL_CONFIG,
                    config,
                    identity=layout.client_key,
                    known_hosts=layout.known_hosts,
                )
            say(f"xl config {XL_CONFIG} on both dom0s (PVH, {guest_mb} MiB, 2 vCPUs)")
            spec = LabSpec(
                net=net,
                layout=layout,
                image=image.dom0,
                link_mbit=link_mbit,
                guest_mb=guest_mb,
                tgt_control_port=TGT_PORT_BASE + net.instance,
                qemu_binary=programs["qemu-system-x86_64"],
                xl_config=XL_CONFIG,
            )
            lab_path, _ = await write_lab_file(spec)
        except BaseException:
            say("up failed: taking down what it made")
            with contextlib.suppress(Exception):
                await self._teardown(state)
            raise
        return await self._mark_up(state, lab_path, started, " (Xen)")

    async def _start_xen_hosts(
        self, state: SandboxState, net: SandboxNetwork, image: XenHostImage, qemu: str
    ) -> None:
        """Boot both Xen hosts at once, record them, wait for dom0's sshd on each."""
        layout = self.layout
        booted = []
        for host in HYPERVISORS:
            serial = layout.logs / f"xen-{host}.serial"
            await asyncio.to_thread(serial.unlink, missing_ok=True)  # ready = a new line
            argv = xen_host_argv(
                image,
                name=f"{net.prefix}-{host}",
                serial_log=serial,
                tap=TAP,
                mac=dom0_mac(net.instance, host),
                interface=net.interface(host),
                gateway=str(net.root_interface.ip),
                qemu_binary=qemu,
            )
            record = await start_xen_host(
                self.runner,
                argv,
                role=f"xen@{host}",
                netns=net.netns(host),
                log=layout.logs / f"xen-{host}.log",
            )
            state.processes.append(record)
            await save_state(layout.root, state)
            booted.append((host, record, serial))
        self.say(f"booting Xen {image.xen_deb.split('_')[1]} on host1 and host2 (TCG)")
        begun = time.monotonic()

        async def ready(host: str, record: ProcessRecord, serial: Path) -> None:
            line = await wait_for_dom0(record, serial)
            self.say(f"{host}: dom0 up after {time.monotonic() - begun:.0f} s: {line}")
            await wait_for_ssh(record, net.address(host), timeout=120.0)

        await asyncio.gather(*(ready(*b) for b in booted))

    async def _free_instance(self, preferred: int | None) -> SandboxNetwork:
        """The first instance whose names, subnet and tgtd port nobody uses."""
        order = list(range(MAX_INSTANCE + 1))
        if preferred is not None:
            order.remove(preferred)
            order.insert(0, preferred)
        seen: list[str] = []
        for n in order:
            net = SandboxNetwork(n)
            conflicts = await instance_conflicts(self.runner, net)
            if await tgt_port_in_use(TGT_PORT_BASE + n):
                conflicts.append(f"a tgtd on control port {TGT_PORT_BASE + n}")
            if not conflicts:
                return net
            if len(seen) < 3:
                seen.append(f"{net.prefix}: {', '.join(conflicts)}")
        raise SandboxError("no free sandbox instance; in use: " + "; ".join(seen))

    # -- down ----------------------------------------------------------------------------

    async def down(self) -> bool:
        """Take down what the state file lists. False when nothing was up (not an error)."""
        if not await asyncio.to_thread(self.layout.root.is_dir):
            self.say(f"no sandbox in {self.layout.root}")
            return False
        async with self._locked(create=False):
            state = await self._load()
            if state is None:
                self.say(f"no sandbox is up in {self.layout.root}")
                return False
            await self._teardown(state)
            return True

    async def _teardown(self, state: SandboxState) -> None:
        """Remove what ``state`` lists, each after checking it is still ours; keep going
        past failures and report them all at the end (the state file then stays)."""
        say, runner = self.say, self.runner
        failures: list[str] = []

        for process in reversed(state.processes):
            try:
                if process.role.startswith("tgtd") and state.tgt is not None:
                    outcome = await stop_tgtd(runner, process, state.tgt.control_port)
                else:
                    outcome = await stop(process.pid, process.start_time)
                say(f"{process.role} (pid {process.pid}): {outcome}")
            except (OSError, CommandFailed) as exc:
                failures.append(f"{process.role} (pid {process.pid}): {exc}")
        if state.tgt is not None:
            await remove_tgt_socket_files(state.tgt.socket_files, state.tgt.control_port)

        ours: list[str] = []
        for made in state.netns:
            inode = await ip.netns_inode(made.name)
            if inode == made.inode:
                ours.append(made.name)
            elif inode is not None:
                failures.append(f"namespace {made.name} is not the one `up` made; left alone")
        # Nothing else lives in our namespaces: sessions of our sshds, guests booted
        # through them. They would keep a namespace (and its tap) alive after `down`.
        for ns in ours:
            for pid in await ip.netns_pids(runner, ns):
                started = await asyncio.to_thread(start_time, pid)
                if started is not None:
                    outcome = await stop(pid, started)
                    say(f"pid {pid} in {ns}: {outcome}")

        for link in reversed(state.links):
            info = await ip.link_info(runner, link.name)
            if not info:
                continue
            if not _same_link(info, link):
                failures.append(f"link {link.name} is not the one `up` made; left alone")
                continue
            try:
                await ip.delete_link(runner, link.name)
                say(f"deleted {link.kind} {link.name}")
            except CommandFailed as exc:
                failures.append(str(exc))
        for ns in reversed(ours):
            try:
                await ip.delete_netns(runner, ns)
                say(f"deleted namespace {ns}")
            except CommandFailed as exc:
                failures.append(str(exc))
        if failures:
            raise SandboxError("down did not finish:\n" + "\n".join(failures))
        await remove_state(self.layout.root)

    # -- status --------------------------------------------------------------------------

    async def status(self) -> SandboxStatus:
        state = await self._load() if await asyncio.to_thread(self.layout.root.is_dir) else None
        if state is None:
            return SandboxStatus(directory=str(self.layout.root), up=False, phase="down")
        return await self._status(state)

    async def _status(self, state: SandboxState) -> SandboxStatus:
        net = SandboxNetwork(state.instance)
        netns = {ns.name: await self._netns_present(ns) for ns in state.netns}
        links = {}
        for link in state.links:
            info = await ip.link_info(self.runner, link.name)
            links[link.name] = bool(info) and _same_link(info, link)
        processes = {
            f"{p.role} (pid {p.pid})": await asyncio.to_thread(is_running, p.pid, p.start_time)
            for p in state.processes
        }
        lab_ok = state.lab_file is not None and await asyncio.to_thread(
            Path(state.lab_file).is_file
        )
        complete = state.phase == "up" and lab_ok
        everything = [*netns.values(), *links.values(), *processes.values()]
        return SandboxStatus(
            directory=str(self.layout.root),
            up=complete and all(everything),
            phase=state.phase,
            lab_file=state.lab_file,
            prefix=state.prefix,
            addresses={
                **{host: net.address(host) for host in HOSTS},
                "guest": str(net.guest_interface.ip),
                "console": str(net.root_interface.ip),
            },
            netns=netns,
            links=links,
            processes=processes,
            link_mbit=state.link_mbit,
            guest_mb=state.guest_mb,
            up_seconds=state.up_seconds,
            hypervisor=state.hypervisor,
        )

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    async def _netns_present(record: NetnsRecord) -> bool:
        return await ip.netns_inode(record.name) == record.inode

    async def _load(self) -> SandboxState | None:
        try:
            return await load_state(self.layout.root)
        except (OSError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(part) for part in first["loc"])
                why = f"{exc.error_count()} problem(s), the first at {where}: {first['msg']}"
            else:
                why = str(exc)
            path = state_path(self.layout.root)
            raise SandboxError(
                f"cannot read {path} ({why}). Nothing was changed: take down what it lists "
                "by hand (ip netns delete, ip link delete, kill), then remove the file."
            ) from None

    @contextlib.asynccontextmanager
    async def _locked(self, *, create: bool) -> AsyncIterator[None]:
        """One `up`/`down` at a time per directory (an flock on ``lock``)."""
        if create:
            await asyncio.to_thread(self.layout.root.mkdir, mode=0o700, parents=True, exist_ok=True)
        fd = await asyncio.to_thread(os.open, self.layout.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SandboxBusy(
                    f"another `miglab sandbox` command is working on {self.layout.root}"
                ) from None
            yield
        finally:
            os.close(fd)
