"""The QEMU command line of a miglab guest, for the QEMU driver and the sandbox alike.

:func:`qemu_guest_argv` is what :class:`~backend.drivers.hv_qemu.QemuDriver` starts on a
hypervisor host (with lab.toml's ``[guest.qemu]``) and what the sandbox and the tests
start locally with a built :class:`~backend.sandbox.guest_image.GuestImage`; both give
it something with a ``kernel`` and an ``initrd`` (:class:`BootImage`).
:func:`kernel_cmdline` is the guest's ``-append``: the serial console, panic -> exit,
and the ``miglab.*`` arguments the guest image's /init reads (its address, gateway,
hostname and heartbeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["DEFAULT_MAC", "BootFiles", "BootImage", "kernel_cmdline", "qemu_guest_argv"]

DEFAULT_MAC = "52:54:00:12:34:56"


class BootImage(Protocol):
    """What QEMU boots with ``-kernel`` / ``-initrd`` (a built GuestImage is one)."""

    @property
    def kernel(self) -> Path: ...

    @property
    def initrd(self) -> Path: ...


@dataclass(frozen=True)
class BootFiles:
    """A kernel and an initrd given by path (lab.toml's ``[guest.qemu]``)."""

    kernel: Path
    initrd: Path


def kernel_cmdline(
    *,
    ip: str | None = None,
    gateway: str | None = None,
    hostname: str | None = None,
    heartbeat_s: int | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The guest's ``-append``: serial console, panic -> exit, and what /init reads."""
    args = ["console=ttyS0", "panic=-1"]
    for key, value in (
        ("miglab.ip", ip),
        ("miglab.gw", gateway),
        ("miglab.hostname", hostname),
        ("miglab.heartbeat", heartbeat_s),
    ):
        if value is not None:
            args.append(f"{key}={value}")
    args += extra
    for arg in args:
        if not arg or any(ch.isspace() for ch in arg):
            raise ValueError(f"kernel argument {arg!r} is empty or has whitespace")
    return " ".join(args)


def _no_comma(what: str, value: str) -> str:
    # QEMU's option syntax would split there; refuse rather than guess an escape.
    if "," in value:
        raise ValueError(f"{what} must not contain a comma: {value!r}")
    return value


def qemu_guest_argv(
    image: BootImage,
    *,
    memory_mb: int,
    vcpus: int = 1,
    qmp_socket: Path,
    serial_log: Path,
    pidfile: Path | None = None,
    drive: str | None = None,
    drive_format: str = "raw",
    drive_cache: str = "none",
    netdev: str | None = None,
    mac: str = DEFAULT_MAC,
    incoming: str | None = None,
    daemonize: bool = False,
    ip: str | None = None,
    gateway: str | None = None,
    heartbeat_s: int | None = None,
    append_extra: Sequence[str] = (),
    name: str = "miglab-guest",
    machine: str = "pc",
    qemu_binary: str = "qemu-system-x86_64",
) -> list[str]:
    """The argv of a QEMU running ``image``; source and destination of a migration must
    differ only in ``incoming`` (and their file paths).

    ``drive`` is a QEMU file name (``iscsi://ADDR/IQN/1`` or a local file), attached as
    virtio ``/dev/vda`` (``drive_cache="none"`` needs O_DIRECT: not on tmpfs); ``netdev``
    a tap device bridged by the caller (``None``: no NIC at all); ``incoming`` e.g.
    ``tcp:0:4444`` makes it a migration destination. TCG only: a KVM guest hung at boot
    on the lab machines.
    """
    if memory_mb < 16 or vcpus < 1:
        raise ValueError(f"memory_mb={memory_mb}, vcpus={vcpus}: too small")
    qmp = _no_comma("qmp_socket", str(qmp_socket.absolute()))
    serial = _no_comma("serial_log", str(serial_log.absolute()))
    argv = [
        qemu_binary,
        "-name", name,
        "-machine", machine,
        "-accel", "tcg",
        "-m", str(memory_mb),
        "-smp", str(vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display", "none",  # not -nographic: that one refuses -daemonize
        # Appended, not truncated: a migration's destination opens the same host's log
        # again, and the console from before (a boot, an oops) must survive it.
        "-chardev", f"file,id=console0,path={serial},append=on",
        "-serial", "chardev:console0",
        "-qmp", f"unix:{qmp},server=on,wait=off",
        "-kernel", str(image.kernel),
        "-initrd", str(image.initrd),
        "-append", kernel_cmdline(
            ip=ip, gateway=gateway, hostname=name, heartbeat_s=heartbeat_s, extra=append_extra
        ),
        "-no-reboot",  # with panic=-1 a crashed guest ends QEMU instead of rebooting
    ]  # fmt: skip
    if drive is not None:
        spec = (
            f"file={_no_comma('drive', drive)},format={drive_format},if=virtio,cache={drive_cache}"
        )
        argv += ["-drive", spec]
    if netdev is not None:
        argv += [
            "-netdev", f"tap,id=net0,ifname={_no_comma('netdev', netdev)},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=net0,mac={_no_comma('mac', mac)}",
        ]  # fmt: skip
    else:
        argv += ["-nic", "none"]
    if pidfile is not None:
        argv += ["-pidfile", str(pidfile.absolute())]
    if incoming is not None:
        argv += ["-incoming", incoming]
    if daemonize:
        argv.append("-daemonize")
    return argv
