"""The Xen sandbox's pure parts: the host VM's command line, the guest's xl config, the
lab file it writes (loaded as `miglab --lab` loads it). The real thing runs in
tests/e2e/test_xen_lab.py."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest

from backend.config import parse_lab
from backend.sandbox.guest_image import GuestImage
from backend.sandbox.lab_file import LabSpec, render
from backend.sandbox.layout import SandboxLayout
from backend.sandbox.network import SandboxNetwork
from backend.sandbox.xen_host import (
    CPU_MODEL,
    XL_CONFIG,
    dom0_mac,
    dom0_ssh_argv,
    guest_xl_config,
    xen_host_argv,
)
from backend.sandbox.xen_image import XenHostImage


def image(root: Path) -> XenHostImage:
    dom0 = GuestImage(
        kernel=root / "vmlinuz",
        initrd=root / "initrd.img",
        kernel_version="6.1.0-57-amd64",
        key="k",
        kernel_package="linux-image-amd64",
        kernel_deb="linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb",
        busybox="busybox-static",
        modules=[],
        builtin_modules=[],
        missing_modules=[],
        extra_paths=[],
        built_at=time.time(),
        build_seconds=1.0,
    )
    return XenHostImage(
        xen=root / "xen", xen_deb="xen-hypervisor-4.17-amd64_4.17.7_amd64", dom0=dom0
    )


def test_the_xen_host_boots_xen_with_dom0_as_multiboot_modules(tmp_path: Path) -> None:
    argv = xen_host_argv(
        image(tmp_path),
        name="mlb3-host1",
        serial_log=tmp_path / "serial",
        tap="tap0",
        mac=dom0_mac(3, "host1"),
        interface=ipaddress.IPv4Interface("198.18.3.11/24"),
        gateway="198.18.3.1",
    )
    assert argv[argv.index("-cpu") + 1] == CPU_MODEL == "qemu64,+svm,+npt"
    assert argv[argv.index("-kernel") + 1] == str(tmp_path / "xen")
    assert "dom0_mem=1024M,max:1024M" in argv[argv.index("-append") + 1]
    # Two host CPUs for Xen (the guest's two vCPUs), one of them for dom0 (xen_host.py).
    assert argv[argv.index("-smp") + 1] == "2"
    assert "dom0_max_vcpus=1" in argv[argv.index("-append") + 1].split()
    kernel, initrd = argv[argv.index("-initrd") + 1].split(",")
    assert initrd == str(tmp_path / "initrd.img")
    words = kernel.split()
    assert words[0] == str(tmp_path / "vmlinuz") and "console=hvc0" in words
    assert "miglab.ip=198.18.3.11/24" in words and "miglab.hostname=mlb3-host1" in words
    assert "console=ttyS0" not in words
    assert "mac=52:54:00:6d:31:03" in argv[argv.index("-device") + 1]
    assert dom0_mac(3, "host2") != dom0_mac(3, "host1")


def test_a_path_with_a_comma_is_refused_not_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="comma"):
        xen_host_argv(
            image(tmp_path / "a,b"),
            name="h",
            serial_log=tmp_path / "serial",
            tap="tap0",
            mac="52:54:00:00:00:01",
            interface=ipaddress.IPv4Interface("198.18.3.11/24"),
        )


def test_the_guest_xl_config_is_pvh_on_the_iscsi_disk() -> None:
    disk = (
        "/dev/disk/by-path/ip-198.18.3.10:3260-iscsi-iqn.2009-06.org.miglab.sandbox:mlb3-disk-lun-1"
    )
    text = guest_xl_config(
        name="miglab-guest",
        memory_mb=256,
        vcpus=2,
        kernel="/var/lib/miglab/domu/vmlinuz",
        ramdisk="/var/lib/miglab/domu/initrd.img",
        cmdline="console=hvc0 miglab.ip=198.18.3.50/24",
        disk=disk,
        mac="52:54:00:6d:6c:03",
        bridge="xenbr0",
    )
    assert 'type = "pvh"' in text.splitlines()
    assert f"disk = [ 'format=raw, vdev=xvda, access=rw, target={disk}' ]" in text
    assert "memory = 256" in text and "vcpus = 2" in text
    for bad in ("/dev/x,y", "/dev/x=y", "/dev/x'y"):
        with pytest.raises(ValueError, match="disk"):
            guest_xl_config(
                name="g",
                memory_mb=256,
                vcpus=2,
                kernel="k",
                ramdisk="r",
                cmdline="c",
                disk=bad,
                mac="m",
                bridge="b",
            )


def test_dom0_commands_are_one_quoted_remote_argument() -> None:
    argv = dom0_ssh_argv(
        "198.18.3.11",
        identity=Path("/k"),
        known_hosts=Path("/kh"),
        remote=["sh", "-c", 'printf "%s" "$1" > "$2"', "w", "a b; rm -rf /", "/etc/x"],
    )
    assert argv[-2] == "root@198.18.3.11"
    assert argv[-1] == 'sh -c \'printf "%s" "$1" > "$2"\' w \'a b; rm -rf /\' /etc/x'
    assert "StrictHostKeyChecking=yes" in argv


def test_the_xen_lab_file_loads_as_a_xen_lab(tmp_path: Path) -> None:
    net = SandboxNetwork(3)
    layout = SandboxLayout(tmp_path)
    spec = LabSpec(
        net=net,
        layout=layout,
        image=image(tmp_path).dom0,
        link_mbit=100,
        guest_mb=256,
        tgt_control_port=6203,
        qemu_binary="/usr/bin/qemu-system-x86_64",
        xl_config=XL_CONFIG,
    )
    lab = parse_lab(render(spec), file=str(layout.lab_file), base_dir=tmp_path)
    assert lab.hypervisor.driver == "xen" and lab.hypervisor.hosts == ["host1", "host2"]
    assert lab.guest.config == XL_CONFIG and lab.guest.qemu is None
    assert (lab.guest.vcpus, lab.guest.memory_mb) == (2, 256)
    assert lab.host("host1").address == "198.18.3.11" and lab.storage.driver == "tgt"
    assert lab.simulation.xen_version == "4.17"  # --sim of this lab: Xen 4.17's rules
