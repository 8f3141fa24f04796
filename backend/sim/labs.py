"""Which lab is simulated, and its machines: the built-in study lab, or one from lab.toml.

:func:`~backend.sim.study.study_lab` is the 2009 study's lab (REFERENCE.md): iSCSIserver
running IET, xenserver1 and xenserver2, a 2-vCPU 1 GiB guest, all on 100 Mbit/s. :func:`build_world`
turns any lab into simulated machines with the model's parameters taken from it (link
speed, guest memory and vCPUs, host and guest names), so a person can predict a
migration before running it for real.

What the simulated machines run (``uname -r``): the storage node a 2009 Gentoo kernel,
the Xen hosts and the guest Debian 8 (Xen 4.4, the last xl with Xen 3.x's migration; or
the Xen release ``[simulation] xen_version`` names). A lab whose hypervisor is QEMU gets
hosts that run Debian 12's QEMU 7.2 (:mod:`backend.sim.commands.qemu`, QMP included)
and its own iSCSI initiator instead of xl and open-iscsi; their uname is left as is.
"""

from __future__ import annotations

import hashlib
from typing import Any

from backend.config import LabConfig
from backend.sim.assumptions import ScenarioInputs
from backend.sim.clock import Runtime
from backend.sim.commands import command_table, qemu, storage
from backend.sim.commands.dbench import DEFAULT_LOADFILE, LOCAL_DISK_DIR
from backend.sim.commands.xl import guest_config, guest_mac
from backend.sim.model import LabParams, Model
from backend.sim.tools import add_device
from backend.sim.world import Node, World

KERNELS = {"storage": "2.6.29-gentoo-r5", "hypervisor": "3.16.0-4-amd64", "guest": "3.16.0-4-amd64"}
DISK_BYTES = 10 * 1024**3
"""The exported partition (the study does not say its size)."""
DEFAULT_GUEST_CONFIG = "/etc/xen/guest.cfg"
SIMULATED_DRIVERS = ("iet", "lio", "tgt")
"""Target software the simulated storage node can play (the fakes that exist)."""


def storage_driver(lab: LabConfig) -> str:
    """The target software the simulation plays: lab.toml's when a fake exists, else IET."""
    return lab.storage.driver if lab.storage.driver in SIMULATED_DRIVERS else "iet"


def initiator_name(host: str) -> str:
    return "iqn.1993-08.org.debian:01:" + hashlib.sha256(host.encode()).hexdigest()[:12]


def check_simulatable(lab: LabConfig) -> None:
    """Raise ValueError if the simulation cannot play ``lab`` (it needs three machines)."""
    if lab.storage.host in lab.hypervisor.hosts:
        raise ValueError(
            f"the simulated lab needs the storage node apart from the hypervisor hosts; "
            f"{lab.storage.host} is both"
        )


def build_world(
    lab: LabConfig,
    runtime: Runtime,
    *,
    host_address: str = "127.0.0.1",
    guest_address: str = "127.0.0.2",
) -> World:
    """The simulated machines of ``lab``, on ``runtime`` (whose model must match the lab)."""
    check_simulatable(lab)
    driver = storage_driver(lab)
    nodes: list[Node] = []
    storage_node = Node(
        lab.storage.host,
        "storage",
        host_address,
        KERNELS["storage"],
        aliases=frozenset({lab.storage_host.address, lab.storage.portal.address}),
    )
    _common(storage_node)
    add_device(storage_node.state, lab.storage.device, DISK_BYTES, block=True)
    if driver == "iet":
        storage_node.add_dirs(["/proc/net/iet", "/etc/iet"])
        storage_node.add_files(
            {
                "/proc/net/iet/volume": storage.proc_file(storage_node, "volume"),
                "/proc/net/iet/session": storage.proc_file(storage_node, "session"),
                "/etc/ietd.conf": "",
                "/etc/iet/ietd.conf": "",
            }
        )
    if driver == "tgt":  # tgtd runs, on the lab's control port
        tgtadm = storage.load_tool("tgtadm")
        if tgtadm is not None:
            storage_node.state["tgt"] = tgtadm.new_state(lab.storage.tgt_control_port)
    nodes.append(storage_node)
    portal = str(lab.storage.portal)
    disk = f"/dev/disk/by-path/ip-{portal}-iscsi-{lab.storage.iqn}-lun-{lab.storage.lun}"
    config_path = lab.guest.config or DEFAULT_GUEST_CONFIG
    cfg = guest_config(
        lab.guest.name, lab.guest.memory_mb, lab.guest.vcpus, disk, guest_mac(lab.guest.name)
    )
    for name in lab.hypervisor.hosts:
        node = Node(
            name,
            "hypervisor",
            host_address,
            KERNELS["hypervisor"],
            aliases=frozenset({lab.host(name).address}),
        )
        _common(node)
        iqn = initiator_name(name)
        node.state["iscsiadm"] = _iscsiadm_state(iqn, host_address)
        node.add_dirs([lab.hypervisor.run_dir])
        if lab.guest.qemu is None:
            node.add_dirs(["/var/lib/iscsi", "/var/log/xen"])
            node.add_files(
                {config_path: cfg, "/etc/iscsi/initiatorname.iscsi": f"InitiatorName={iqn}\n"}
            )
        else:  # QEMU: the guest's kernel and initramfs on each host, as lab.toml says
            images = [lab.guest.qemu.kernel, lab.guest.qemu.initrd]
            node.add_files({path: "" for path in images if path is not None})
        node.add_files({"/proc/meminfo": _meminfo(runtime, node)})
        nodes.append(node)
    guest = Node(
        lab.guest.name,
        "guest",
        guest_address,
        KERNELS["guest"],
        aliases=frozenset({lab.guest.address}),
    )
    _common(guest)
    guest.add_dirs([LOCAL_DISK_DIR, "/srv/dbench", "/usr/src/linux", "/mnt/iscsi"])
    guest.add_files(
        {
            DEFAULT_LOADFILE: "# dbench client.txt (simulated: the load is modelled)\n",
            "/proc/uptime": lambda: _uptime(runtime.model),
        }
    )
    nodes.append(guest)
    hypervisor = "qemu" if lab.guest.qemu is not None and lab.hypervisor.driver == "qemu" else "xen"
    binary = lab.guest.qemu.binary if lab.guest.qemu is not None else qemu.BINARY
    world = World(runtime.model, runtime, nodes, command_table(driver, hypervisor, binary))
    world.portal = portal
    world.guest_config_path = config_path
    if storage.load_tool("iscsiadm") is not None:
        world.block_devices = storage.is_block  # else the disks are simply there
    world.after_command.append(storage.sync)
    storage.sync(world, storage_node, [])
    return world


def _meminfo(runtime: Runtime, node: Node) -> Any:
    return lambda: qemu.meminfo(runtime.model, node.name)


def model_for(lab: LabConfig, seed: int = 0, scenario: ScenarioInputs | None = None) -> Model:
    """The model of ``lab`` (with a scenario's own ``[simulation]`` inputs over the lab's)."""
    return Model(LabParams.from_lab(lab, scenario), seed)


def _common(node: Node) -> None:
    node.add_dirs(["/tmp", "/root", "/etc", "/dev/shm", "/proc", "/var/log", "/run", "/srv"])
    node.add_files({"/etc/hostname": node.name + "\n"})


def _iscsiadm_state(iqn: str, ip: str) -> dict[str, Any]:
    tool = storage.load_tool("iscsiadm")
    if tool is None:
        return {"initiator_name": iqn}
    state: dict[str, Any] = tool.new_state(initiator_name=iqn, ip=ip)
    return state


def _uptime(model: Model) -> str:
    up = max(0.0, model.t - model.guest.booted_at) if model.guest.status != "off" else 0.0
    return f"{up:.2f} {up * 1.9:.2f}\n"


def preparation(lab: LabConfig) -> list[tuple[str, list[str]]]:
    """The commands that make the simulated lab ready: export, log in, boot the guest.

    What a person would type (and what the drivers do): for a quick look at a lab that
    is already set up, ``miglab sim serve --ready``.
    """
    s = lab.storage
    portal = str(s.portal)
    steps: list[tuple[str, list[str]]] = []
    driver = storage_driver(lab)
    if driver == "tgt":
        adm = ["tgtadm"] + ([] if s.tgt_control_port is None else ["-C", str(s.tgt_control_port)])
        adm += ["--lld", "iscsi"]
        steps += [
            (s.host, [*adm, "--op", "new", "--mode", "target", "--tid", "1", "-T", s.iqn]),
            (
                s.host,
                [*adm, "--op", "new", "--mode", "logicalunit", "--tid", "1",
                 "--lun", str(s.lun), "-b", s.device],
            ),
            (s.host, [*adm, "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"]),
        ]  # fmt: skip
    elif driver == "iet":
        steps += [
            (s.host, ["ietadm", "--op", "new", "--tid=1", "--params", f"Name={s.iqn}"]),
            (
                s.host,
                ["ietadm", "--op", "new", "--tid=1", f"--lun={s.lun}", "--params",
                 f"Path={s.device},Type=blockio"],
            ),
        ]  # fmt: skip
    else:
        tpg = f"/iscsi/{s.iqn}/tpg1"
        steps += [
            (s.host, ["targetcli", "/backstores/block", "create", "name=disk", f"dev={s.device}"]),
            (s.host, ["targetcli", "/iscsi", "create", s.iqn]),
            (
                s.host,
                ["targetcli", f"{tpg}/luns", "create", "/backstores/block/disk", f"lun={s.lun}"],
            ),
            (
                s.host,
                ["targetcli", tpg, "set", "attribute", "generate_node_acls=1",
                 "demo_mode_write_protect=0", "authentication=0"],
            ),
        ]  # fmt: skip
    first = lab.hypervisor.hosts[0]
    if lab.hypervisor.driver == "qemu":  # QEMU logs in itself when it starts
        from backend.drivers.hv_qemu import QemuDriver

        steps.append((first, QemuDriver(lab, {}, lambda event: None).guest_argv(first)))
        return steps
    for host in lab.hypervisor.hosts:
        steps += [
            (host, ["iscsiadm", "-m", "discovery", "-t", "st", "-p", portal]),
            (host, ["iscsiadm", "-m", "node", "-T", s.iqn, "-p", portal, "--login"]),
        ]
    steps.append((first, ["xl", "create", lab.guest.config or DEFAULT_GUEST_CONFIG]))
    return steps
