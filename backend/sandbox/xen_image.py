"""The Xen host's boot files: Xen 4.17 and a dom0 initramfs, from Debian packages.

Built with the guest image's machinery (:func:`~backend.sandbox.guest_image.fetch_packages`
downloads and unpacks each package once, :func:`~backend.sandbox.guest_image.build_guest_image`
assembles and caches the initramfs), in the same cache directory, so a warm build reuses
everything and asks apt nothing:

- ``xen``: ``boot/xen-4.17-amd64.gz`` of ``xen-hypervisor-4.17-amd64``, gunzipped (a
  multiboot ELF QEMU's ``-kernel`` loads), kept under ``xen/<deb name>/xen``;
- dom0: Debian's generic kernel (``linux-image-amd64``: CONFIG_XEN_DOM0; the cloud kernel
  has not), busybox, and from their packages xl and the daemons of xen-utils-4.17 (at
  their packaged paths: libxl finds libxl-save-helper and /etc/xen/scripts there),
  xenstore-utils, open-iscsi's iscsid and iscsiadm, OpenSSH's sshd and ssh, iproute2's
  ip and bridge, bash (Xen's hotplug scripts are bash scripts), libgcc_s (xl aborts
  without it: "libgcc_s.so.1 must be installed for pthread_cancel", LAB-NOTES);
- the guest's kernel and initramfs, copied into dom0 at :data:`DOMU_KERNEL` and
  :data:`DOMU_RAMDISK` (a PV domU boots from files in dom0).

dom0's /init is the guest image's; the hooks here (sourced before the ready line) start,
in the order LAB-NOTES found necessary: xenfs on /proc/xen, xenstored, xen-init-dom0,
xenconsoled (it needs devpts, which /init mounts), a bridge ``xenbr0`` that takes eth0
and its address (the guest's vif joins it), iscsid with an initiator name made from
the host name, sshd, and busybox's mdev as the kernel's hotplug helper so that an
iSCSI disk gets udev's ``/dev/disk/by-path/ip-ADDR:PORT-iscsi-IQN-lun-N`` name (there is
no udev in dom0; :data:`BY_PATH_SCRIPT` builds the name the way udev's path_id does,
from sysfs, so both dom0s agree on it and the guest's xl config migrates unchanged).
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.sandbox.guest_image import (
    DEFAULT_MODULES,
    ExtraFile,
    GuestImage,
    GuestImageError,
    Progress,
    build_guest_image,
    fetch_packages,
)

XEN_VERSION = "4.17"
XEN_LIBEXEC = f"/usr/lib/xen-{XEN_VERSION}/bin"
DOM0_KERNEL_PACKAGE = "linux-image-amd64"  # the generic kernel: CONFIG_XEN_DOM0=y
XEN_PACKAGES = (
    f"xen-hypervisor-{XEN_VERSION}-amd64",
    f"xen-utils-{XEN_VERSION}",
    "xen-utils-common",
    "xenstore-utils",
    "libxencall1",
    "libxendevicemodel1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenhypfs1",
    f"libxenmisc{XEN_VERSION}",
    "libxenstore4",
    "libxentoolcore1",
    "libxentoollog1",
    "libyajl2",
)
TOOL_PACKAGES = (
    "open-iscsi",
    "libopeniscsiusr",
    "libisns0",
    "openssh-server",
    "openssh-client",
    "iproute2",
    "bash",
    "util-linux",  # flock: Xen's hotplug scripts lock with it (busybox has none)
)
DOM0_PACKAGES = XEN_PACKAGES + TOOL_PACKAGES
# Xen's backends and control devices, the bridge for the vifs, the iSCSI initiator,
# the NIC QEMU gives the host (virtio-net).
DOM0_MODULES = (
    *DEFAULT_MODULES,
    "xen_evtchn",
    "xen_gntdev",
    "xen_gntalloc",
    "xen_privcmd",
    "xenfs",
    "xen_blkback",
    "xen_netback",
    "bridge",
    "sd_mod",
    "crc32c_generic",  # iSCSI digests: without it no connection ("crc32c loading error")
    "iscsi_tcp",
)
# The guest's Xen frontends and what its disk hook mounts (ext4).
DOMU_MODULES = (
    "xen_netfront",
    "xen_blkfront",
    "crc16",
    "crc32c_generic",
    "mbcache",
    "jbd2",
    "ext4",
)
DOMU_DISK = "/dev/xvda"
DOMU_KERNEL = "/var/lib/miglab/domu/vmlinuz"
DOMU_RAMDISK = "/var/lib/miglab/domu/initrd.img"
XENBR = "xenbr0"
DOM0_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
DOM0_CLIENT_KEY = "/root/.ssh/id_ed25519"
LIBGCC_S = Path("/lib/x86_64-linux-gnu/libgcc_s.so.1")
# Where dom0's address range is: its known_hosts names the other dom0 by pattern, so
# one image serves every sandbox instance (all of them in 198.18.0.0/15).
SANDBOX_HOSTS_PATTERN = "198.18.*,198.19.*"

# (path in a package, path in dom0): binaries, with the libraries ldd finds.
_XEN_BINARIES = (
    f"{XEN_LIBEXEC}/xl",
    f"{XEN_LIBEXEC}/xenstored",
    f"{XEN_LIBEXEC}/xenconsoled",
    f"{XEN_LIBEXEC}/xenconsole",
    f"{XEN_LIBEXEC}/xen-init-dom0",
    f"{XEN_LIBEXEC}/libxl-save-helper",
    f"{XEN_LIBEXEC}/xentop",
    "usr/bin/xenstore",
)
_TOOL_BINARIES = (
    ("sbin/iscsid", "/usr/sbin/iscsid"),
    ("sbin/iscsiadm", "/usr/sbin/iscsiadm"),
    ("usr/sbin/sshd", "/usr/sbin/sshd"),
    ("usr/bin/ssh", "/usr/bin/ssh"),
    ("bin/ip", "/usr/local/bin/ip"),
    ("sbin/bridge", "/usr/local/bin/bridge"),
    ("bin/bash", "/bin/bash"),
    ("usr/bin/flock", "/usr/bin/flock"),
)
_XENSTORE_TOOLS = ("read", "write", "rm", "exists", "list", "ls", "chmod", "watch")

DOM0_INIT_HOOK = rf"""# miglab dom0, generated by backend/sandbox/xen_image.py (sourced by /init)
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{XEN_LIBEXEC}
mkdir -p /var/lock /var/run/xen /var/run/xenstored /var/log/xen/console /var/lib/xen \
    /var/lib/xenstored /run/sshd /var/empty /var/lib/iscsi /run/lock/iscsi /etc/iscsi/nodes \
    /etc/iscsi/send_targets /dev/disk/by-path
# What udev would make: Xen's locking.sh stats /dev/stdin.
ln -s /proc/self/fd /dev/fd
for n in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${{n%%:*}}" "/dev/${{n#*:}}"; done
mount -t xenfs xenfs /proc/xen || log "cannot mount xenfs"
{XEN_LIBEXEC}/xenstored --pid-file=/var/run/xenstored.pid || log "xenstored failed"
{XEN_LIBEXEC}/xen-init-dom0 || log "xen-init-dom0 failed"
# dom0 first when the guest keeps its vCPUs busy (Xen's usual advice: a higher dom0
# weight); without it xl and sshd in dom0 starved under `sysbench --threads=20` in TCG.
xl sched-credit2 -d Domain-0 -w 1024 || log "cannot raise dom0's credit2 weight"
{XEN_LIBEXEC}/xenconsoled --pid-file=/var/run/xenconsoled.pid --log=guest \
    --log-dir=/var/log/xen/console || log "xenconsoled failed"

# The guest's vif joins {XENBR}, which takes eth0 and dom0's address.
if [ -n "$ip" ] && ip link add {XENBR} type bridge; then
    ip link set {XENBR} up
    ip addr del "$ip" dev eth0
    ip link set eth0 master {XENBR}
    ip addr add "$ip" dev {XENBR} || log "no address on {XENBR}"
    if [ -n "$gw" ]; then ip route add default via "$gw" || log "no route via $gw"; fi
fi

# udev's /dev/disk/by-path names for iSCSI disks: busybox mdev on the kernel's uevents
# (Debian's kernel has no uevent helper, so mdev listens on netlink).
mdev -d || log "mdev failed"

echo "InitiatorName=iqn.2009-06.org.miglab.sandbox:$name" > /etc/iscsi/initiatorname.iscsi
iscsid || log "iscsid failed"
# sshd kept running as a service manager would (Restart=always): a test kills it to
# break a migration, and the host must take SSH again afterwards.
(while :; do /usr/sbin/sshd -D -e >>/var/log/sshd.log 2>&1; sleep 1; done) &
echo "MIGLAB-DOM0 xen=$(cat /sys/hypervisor/version/major 2>/dev/null).\
$(cat /sys/hypervisor/version/minor 2>/dev/null) xenstored=$(cat /var/run/xenstored.pid)"
"""

MDEV_CONF = "sd[a-z]+ 0:0 660 */etc/miglab/by-path.sh\n"
BY_PATH_SCRIPT = r"""#!/bin/sh
# udev's path_id for an iSCSI disk, for mdev: /dev/disk/by-path/ip-ADDR:PORT-iscsi-IQN-lun-N
# (systemd src/udev/udev-builtin-path_id.c handle_scsi_iscsi).
dev=$MDEV
dir=/dev/disk/by-path
if [ "$ACTION" = remove ]; then
    for link in "$dir"/*; do
        [ "$(readlink "$link")" = "../../$dev" ] && rm -f "$link"
    done
    exit 0
fi
sys=$(readlink -f "/sys/block/$dev/device") || exit 0
session=$(echo "$sys" | sed -n 's,.*/session\([0-9]*\)/.*,\1,p')
[ -n "$session" ] || exit 0
lun=${sys##*:}
target=$(cat "/sys/class/iscsi_session/session$session/targetname") || exit 0
conn=/sys/class/iscsi_connection/connection$session:0
address=$(cat "$conn/persistent_address") || exit 0
port=$(cat "$conn/persistent_port") || exit 0
mkdir -p "$dir"
ln -sf "../../$dev" "$dir/ip-$address:$port-iscsi-$target-lun-$lun"
"""

SSHD_CONFIG = f"""\
# miglab dom0: root by key only (the console's and the other dom0's, for xl migrate)
Port 22
HostKey {DOM0_HOST_KEY}
AuthorizedKeysFile /root/.ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
MaxSessions 64
MaxStartups 64:30:128
"""

SSH_CONFIG = f"""\
# xl migrate runs `ssh HOST xl migrate-receive`: keys only, known hosts only.
Host *
    IdentityFile {DOM0_CLIENT_KEY}
    BatchMode yes
    StrictHostKeyChecking yes
    UserKnownHostsFile /root/.ssh/known_hosts
"""

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"  # sshd's privilege separation
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = "root:x:0:\nnogroup:x:65534:\n"
XL_CONF = """\
# miglab dom0: no autoballooning (dom0's memory is fixed by dom0_mem)
autoballoon="off"
"""


@dataclass(frozen=True)
class Dom0Keys:
    """What dom0 authenticates with: the sandbox made them once and keeps them."""

    host_key: Path  # private ed25519 host key, the same on both dom0s
    host_public: str
    client_key: Path  # dom0 root's key for `ssh` to the other dom0
    client_public: str
    console_public: str  # the console's key (the sandbox's client key)


@dataclass(frozen=True)
class XenHostImage:
    xen: Path  # the hypervisor, gunzipped
    xen_deb: str
    dom0: GuestImage  # dom0's kernel and initramfs


def _find(roots: Sequence[Path], relative: str) -> Path:
    relative = relative.lstrip("/")
    for root in roots:
        for candidate in (root / relative, root / "usr" / relative):
            if candidate.is_file():
                return candidate
    raise GuestImageError(f"none of the unpacked packages has {relative}")


def _gunzip(source: Path, dest: Path) -> None:
    if dest.is_file():
        return
    partial = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(source, "rb") as src, partial.open("wb") as out:
        shutil.copyfileobj(src, out)
    partial.rename(dest)


async def unpack_xen(cache_dir: Path, roots: Sequence[Path]) -> tuple[Path, str]:
    """``xen`` gunzipped into the cache (once); its path and the package it came from."""
    hypervisor = next((r for r in roots if r.name.startswith("xen-hypervisor-")), None)
    if hypervisor is None:
        raise GuestImageError("xen-hypervisor package not unpacked")
    packed = hypervisor / "boot" / f"xen-{XEN_VERSION}-amd64.gz"
    if not await asyncio.to_thread(packed.is_file):
        raise GuestImageError(f"{hypervisor.name} has no boot/{packed.name}")
    dest = cache_dir / "xen" / hypervisor.name / "xen"
    await asyncio.to_thread(_gunzip, packed, dest)
    return dest, hypervisor.name


async def build_dom0_image(
    cache_dir: Path,
    *,
    keys: Dom0Keys,
    domu: GuestImage,
    progress: Progress | None = None,
) -> XenHostImage:
    """Xen and the dom0 image (cached in ``cache_dir``, beside the guest images)."""
    say: Progress = progress or (lambda _message: None)
    roots = await fetch_packages(cache_dir, DOM0_PACKAGES, progress=say)
    xen, xen_deb = await unpack_xen(cache_dir, roots)
    binaries: list[tuple[Path, str]] = []
    for path in _XEN_BINARIES:
        dest = "/" + path.lstrip("/")
        binaries.append((await asyncio.to_thread(_find, roots, path), dest))
    for path, dest in _TOOL_BINARIES:
        binaries.append((await asyncio.to_thread(_find, roots, path), dest))
    binaries.append((LIBGCC_S, str(LIBGCC_S)))

    files: dict[str, ExtraFile] = {
        "/etc/miglab/init.d/40-dom0.sh": DOM0_INIT_HOOK,
        "/etc/miglab/by-path.sh": (BY_PATH_SCRIPT, 0o755),
        "/etc/mdev.conf": MDEV_CONF,
        "/etc/passwd": PASSWD,
        "/etc/group": GROUP,
        "/etc/xen/xl.conf": XL_CONF,
        "/etc/ssh/sshd_config": SSHD_CONFIG,
        "/etc/ssh/ssh_config": SSH_CONFIG,
        DOM0_HOST_KEY: (await asyncio.to_thread(keys.host_key.read_bytes), 0o600),
        DOM0_HOST_KEY + ".pub": keys.host_public.strip() + "\n",
        DOM0_CLIENT_KEY: (await asyncio.to_thread(keys.client_key.read_bytes), 0o600),
        "/root/.ssh/authorized_keys": (
            f"{keys.console_public.strip()}\n{keys.client_public.strip()}\n",
            0o600,
        ),
        "/root/.ssh/known_hosts": (
            f"{SANDBOX_HOSTS_PATTERN} {' '.join(keys.host_public.split()[:2])}\n",
            0o644,
        ),
        DOMU_KERNEL: (await asyncio.to_thread(domu.kernel.read_bytes), 0o644),
        DOMU_RAMDISK: (await asyncio.to_thread(domu.initrd.read_bytes), 0o644),
    }
    # Xen's hotplug scripts (vif-bridge, block) and iscsid's defaults, as packaged.
    scripts = next((r for r in roots if r.name.startswith("xen-utils-common_")), None)
    if scripts is None:
        raise GuestImageError("xen-utils-common (Xen's hotplug scripts) not unpacked")
    for script in sorted(
        await asyncio.to_thread(lambda: list((scripts / "etc/xen/scripts").iterdir()))
    ):
        data = await asyncio.to_thread(script.read_bytes)
        files[f"/etc/xen/scripts/{script.name}"] = (data, 0o755)
    iscsi_conf = await asyncio.to_thread(_find, roots, "etc/iscsi/iscsid.conf")
    files["/etc/iscsi/iscsid.conf"] = (await asyncio.to_thread(iscsi_conf.read_bytes), 0o600)

    symlinks = {"/usr/sbin/xl": f"{XEN_LIBEXEC}/xl"}
    symlinks.update({f"/usr/bin/xenstore-{t}": "xenstore" for t in _XENSTORE_TOOLS})
    say(f"dom0 image (Xen {XEN_VERSION}, {DOM0_KERNEL_PACKAGE})")
    dom0 = await build_guest_image(
        cache_dir,
        extra_binaries=binaries,
        extra_files=files,
        package_roots=roots,
        extra_symlinks=symlinks,
        modules=DOM0_MODULES,
        kernel_package=DOM0_KERNEL_PACKAGE,
        progress=say,
    )
    return XenHostImage(xen=xen, xen_deb=xen_deb, dom0=dom0)
