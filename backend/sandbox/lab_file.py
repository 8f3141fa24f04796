"""The sandbox's lab.toml: the three namespaces as hosts, tgt, qemu and the guest.

Every value that comes from outside (paths, addresses) is written as a TOML basic
string via ``json.dumps`` (its escapes are TOML's), and the text is validated with
:func:`backend.config.parse_lab` before it is written, so `up` never leaves a lab file
that `miglab --lab` would refuse.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from backend.config import LabConfig, parse_lab
from backend.sandbox.guest_image import GuestImage
from backend.sandbox.layout import SandboxLayout
from backend.sandbox.network import HOSTS, HYPERVISORS, TAP, SandboxNetwork
from backend.sandbox.services import ISCSI_PORT, SSH_PORT, TGT_LUN
from backend.sandbox.xen_image import XEN_VERSION

GUEST_NAME = "miglab-guest"
GUEST_VCPUS = 1  # TCG on a 2-core machine: a second vCPU only steals from the hosts
XEN_GUEST_VCPUS = 2  # the study's guest (issue 11)
MIGRATION_PORT = 4444


def iqn(net: SandboxNetwork) -> str:
    return f"iqn.2009-06.org.miglab.sandbox:{net.prefix}-disk"


@dataclass(frozen=True)
class LabSpec:
    net: SandboxNetwork
    layout: SandboxLayout
    image: GuestImage
    link_mbit: int
    guest_mb: int
    tgt_control_port: int
    qemu_binary: str
    xl_config: str | None = None  # set: the Xen lab (dom0s at the hosts' addresses)
    qemu_version: str | None = None  # the guest QEMU's MAJOR.MINOR, for --sim's rules


def _q(value: object) -> str:
    return json.dumps(str(value))


def render(spec: LabSpec) -> str:
    net, layout = spec.net, spec.layout
    key, known = _q(layout.client_key), _q(layout.known_hosts)
    out = [
        "# Written by `miglab sandbox up`; the next `up` writes it again.",
        f"# The sandbox directory is {layout.root}; `miglab sandbox down` takes it all down.",
        "",
        "[lab]",
        'name = "sandbox"',
        f"link_mbit = {spec.link_mbit}",
        "description = "
        + _q(
            f"miglab sandbox {net.prefix}: network namespaces {', '.join(map(net.netns, HOSTS))} "
            f"on bridge {net.bridge} ({net.subnet}), links shaped to {spec.link_mbit} Mbit/s"
        ),
    ]
    xen = spec.xl_config is not None
    if xen:
        out[-1] = "description = " + _q(
            f"miglab sandbox {net.prefix}: Xen {XEN_VERSION} hosts (QEMU VMs, dom0 at "
            f"{net.address('host1')} and {net.address('host2')}) and the storage namespace "
            f"{net.netns('storage')} on bridge {net.bridge} ({net.subnet}), links shaped to "
            f"{spec.link_mbit} Mbit/s"
        )
    for host in HOSTS:
        out += [
            "",
            f"[hosts.{host}]",
            f"address = {_q(net.address(host))}",
            'user = "root"',
            f"port = {SSH_PORT}",
            f"identity = {key}",
            f"known_hosts = {known}",
        ]
    # Extra arguments: the qemu driver adds them to its own (console, hostname, ...).
    append = f"miglab.ip={net.guest_interface}"
    out += [
        "",
        "[storage]",
        'host = "storage"',
        'driver = "tgt"',
        f"iqn = {_q(iqn(net))}",
        f"device = {_q(layout.disk)}",
        f'portal = "{net.address("storage")}:{ISCSI_PORT}"',
        f"lun = {TGT_LUN}",
        f"tgt_control_port = {spec.tgt_control_port}",
        "",
        "[hypervisor]",
        f'driver = "{"xen" if xen else "qemu"}"',
        f"hosts = [{', '.join(_q(h) for h in HYPERVISORS)}]",
    ]
    if not xen:
        out.append(f"run_dir = {_q(layout.run_dir)}")
    out += [
        "",
        "[guest]",
        f"name = {_q(GUEST_NAME)}",
        f"address = {_q(net.guest_interface.ip)}",
        'user = "root"',
        f"port = {SSH_PORT}",
        f"identity = {key}",
        f"known_hosts = {known}",  # dropbear's key in the guest is recorded there too
        f"vcpus = {XEN_GUEST_VCPUS if xen else GUEST_VCPUS}",
        f"memory_mb = {spec.guest_mb}",
    ]
    if xen:
        out += [f"config = {_q(spec.xl_config)}", ""]  # on both dom0s
        out += _simulation("xen_version", XEN_VERSION)
        return "\n".join(out)
    out += [
        "",
        "[guest.qemu]",
        f"kernel = {_q(spec.image.kernel)}",
        f"initrd = {_q(spec.image.initrd)}",
        f"append = {_q(append)}",
        f"binary = {_q(spec.qemu_binary)}",
        'accel = "tcg"',
        f"tap = {_q(TAP)}",
        f"mac = {_q(net.guest_mac)}",
        f"migration_port = {MIGRATION_PORT}",
        "",
    ]
    if spec.qemu_version is not None:
        out += _simulation("qemu_version", spec.qemu_version)
    return "\n".join(out)


def _simulation(key: str, version: str) -> list[str]:
    """The release the hosts run, so `miglab run --sim --lab` of this file predicts with
    that release's pre-copy rules (the real lab ignores the table)."""
    return ["[simulation]", f"{key} = {_q(version)}", ""]


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".lab-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def write_lab_file(spec: LabSpec) -> tuple[Path, LabConfig]:
    """Render, validate (as `miglab --lab` would load it) and write the lab file."""
    path = spec.layout.lab_file
    text = render(spec)
    lab = parse_lab(text, file=str(path), base_dir=path.parent)
    await asyncio.to_thread(_write, path, text)
    return path, lab
