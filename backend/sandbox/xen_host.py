"""A Xen host of the sandbox: QEMU (TCG) running Xen 4.17 and its dom0, on a tap.

The host namespace keeps its bridge ``br0`` (the shaped veth plus the tap), but not the
host's address: dom0 has it, on its own bridge ``xenbr0`` that takes dom0's NIC and the
guest's vif. So the guest, dom0 and the migration stream all use the namespace's link,
as in the study.

``-cpu qemu64,+svm,+npt``: with ``-cpu max`` the PV dom0 crashes early (LAB-NOTES);
``+npt`` gives Xen HAP, which the guest needs: Debian's Xen 4.17 is built without shadow
paging (``# CONFIG_SHADOW_PAGING is not set`` in its config), so a PV guest cannot enable
log-dirty mode and ``xl migrate`` of it fails ("Failed to enable logdirty: 95,22,0",
captured in tests/data/xl/real-4.17). The guest is PVH (HAP log-dirty), still Xen's PV
drivers and no device model.

dom0 is ready when its /init prints the guest image's ready line on the serial console
(Xen's ``console=com1``, dom0's ``console=hvc0``): the daemons and sshd run by then.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Sequence
from pathlib import Path

from backend.drivers.qemu_argv import kernel_cmdline
from backend.sandbox.guest_image import READY_MARKER, wait_for_console
from backend.sandbox.processes import ProcessRecord, is_running, spawn
from backend.sandbox.xen_image import XenHostImage
from backend.transport.base import CommandResult, HostRunner

HOST_MEMORY_MB = 2048
DOM0_MEMORY_MB = 1024
HOST_VCPUS = 2
CPU_MODEL = "qemu64,+svm,+npt"
# dom0 gets one vCPU of the host's two (the guest may use both). A PV dom0 under TCG pays
# dearly for cross-vCPU work (each TLB shootdown and wakeup IPI goes through Xen and makes
# QEMU's vCPU threads sync): with one, an idle 256 MiB guest's `xl migrate` took 43-57 s
# instead of 105-140 s here, a warm `up` 16 s instead of 60. Raw TCP between the dom0s is
# ~11 MB/s either way (the 100 Mbit/s link); ssh in dom0 is the bottleneck (~3-4 MB/s).
DOM0_VCPUS = 1
XEN_CMDLINE = (
    f"dom0_mem={DOM0_MEMORY_MB}M,max:{DOM0_MEMORY_MB}M dom0_max_vcpus={DOM0_VCPUS} "
    "console=com1 loglvl=all guest_loglvl=all noreboot"
)
# TCG on a shared 2-core machine: two hosts booting at once take over a minute.
BOOT_TIMEOUT_S = 600.0
XL_CONFIG = "/etc/xen/miglab-guest.cfg"
_DOM0_MAC_BYTE = {"host1": 0x31, "host2": 0x32}


def dom0_mac(instance: int, host: str) -> str:
    """dom0's NIC: unique per host and sandbox instance (the guest's is ``...:6c:NN``)."""
    return f"52:54:00:6d:{_DOM0_MAC_BYTE[host]:02x}:{instance:02x}"


def _plain(what: str, value: str) -> str:
    # QEMU's -initrd splits multiboot modules at commas; refuse rather than escape.
    if "," in value or any(ch.isspace() for ch in value):
        raise ValueError(f"{what} must have no comma or blank: {value!r}")
    return value


def xen_host_argv(
    image: XenHostImage,
    *,
    name: str,
    serial_log: Path,
    tap: str,
    mac: str,
    interface: ipaddress.IPv4Interface,
    gateway: str | None = None,
    qemu_binary: str = "qemu-system-x86_64",
) -> list[str]:
    """The QEMU command line of one Xen host (dom0 takes ``interface``)."""
    dom0_cmdline = kernel_cmdline(
        ip=str(interface), gateway=gateway, hostname=name, extra=["earlyprintk=xen"]
    ).replace("console=ttyS0", "console=hvc0")
    modules = (
        f"{_plain('dom0 kernel', str(image.dom0.kernel))} {dom0_cmdline} rdinit=/init,"
        f"{_plain('dom0 initrd', str(image.dom0.initrd))}"
    )
    return [
        qemu_binary,
        "-name", name,
        "-machine", "q35",
        "-cpu", CPU_MODEL,
        "-accel", "tcg",
        "-m", str(HOST_MEMORY_MB),
        "-smp", str(HOST_VCPUS),
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-serial", f"file:{_plain('serial log', str(serial_log.absolute()))}",
        "-kernel", _plain("xen", str(image.xen)),
        "-append", XEN_CMDLINE,
        "-initrd", modules,
        "-netdev", f"tap,id=net0,ifname={_plain('tap', tap)},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={_plain('mac', mac)}",
        "-no-reboot",
    ]  # fmt: skip


async def start_xen_host(
    runner: HostRunner, argv: Sequence[str], *, role: str, netns: str, log: Path
) -> ProcessRecord:
    return await spawn(runner, role, argv, log=log, netns=netns)


async def wait_for_dom0(
    record: ProcessRecord, serial_log: Path, timeout: float = BOOT_TIMEOUT_S
) -> str:
    """The ready line of dom0's /init, once it is on the serial console."""
    return await wait_for_console(
        serial_log,
        READY_MARKER,
        timeout=timeout,
        alive=lambda: is_running(record.pid, record.start_time),
    )


def dom0_ssh_argv(
    address: str, *, identity: Path, known_hosts: Path, remote: Sequence[str]
) -> list[str]:
    """``ssh root@dom0 <remote argv>``: the remote command is quoted with shlex.join."""
    return [
        "ssh",
        "-i", str(identity),
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "ConnectTimeout=20",
        f"root@{address}",
        shlex.join(remote),
    ]  # fmt: skip


async def dom0_run(
    runner: HostRunner,
    address: str,
    remote: Sequence[str],
    *,
    identity: Path,
    known_hosts: Path,
    timeout: float = 120.0,
) -> CommandResult:
    argv = dom0_ssh_argv(address, identity=identity, known_hosts=known_hosts, remote=remote)
    return (await runner.run(argv, timeout=timeout)).check()


async def write_dom0_file(
    runner: HostRunner,
    address: str,
    path: str,
    content: str,
    *,
    identity: Path,
    known_hosts: Path,
) -> None:
    """Write ``content`` to ``path`` on dom0 (an argument, not stdin: the runner has none)."""
    script = 'printf "%s" "$1" > "$2"'
    await dom0_run(
        runner,
        address,
        ["sh", "-c", script, "miglab-write", content, path],
        identity=identity,
        known_hosts=known_hosts,
    )


def guest_xl_config(
    *,
    name: str,
    memory_mb: int,
    vcpus: int,
    kernel: str,
    ramdisk: str,
    cmdline: str,
    disk: str,
    mac: str,
    bridge: str,
) -> str:
    """The guest's xl config: PVH (see the module docstring), the iSCSI disk by its
    by-path name (the same on both dom0s), one vif on dom0's bridge."""
    for what, value in (("disk", disk), ("mac", mac), ("bridge", bridge)):
        # xl's disk and vif specs split at commas and '='; quotes end the string.
        if any(ch in value for ch in ",='\"") or any(ch.isspace() for ch in value):
            raise ValueError(f"{what} cannot go into an xl config: {value!r}")
    return "\n".join(
        [
            "# Written by `miglab sandbox up --hypervisor xen`.",
            f'name = "{name}"',
            'type = "pvh"',
            f'kernel = "{kernel}"',
            f'ramdisk = "{ramdisk}"',
            f'extra = "{cmdline}"',
            f"memory = {memory_mb}",
            f"vcpus = {vcpus}",
            f"disk = [ 'format=raw, vdev=xvda, access=rw, target={disk}' ]",
            f"vif = [ 'mac={mac},bridge={bridge}' ]",
            'on_poweroff = "destroy"',
            'on_reboot = "restart"',
            'on_crash = "destroy"',
            "",
        ]
    )
