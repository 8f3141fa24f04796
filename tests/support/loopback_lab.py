"""A whole miglab lab on loopback, for the experiment runner's tests.

* guest: a real OpenSSH sshd on 127.0.0.1 (the ``sshd`` fixture). What the runner
  starts "in the guest" (sysbench, dbench, the dirtier) runs for real on this machine
  over that SSH connection, and the storage host's ping pings 127.0.0.1 for real.
* storage: ``address = "local"``, a real tgtd (its own control port and portal on
  127.0.0.1) that the tgt driver exports an image file from.
* xen1, xen2: Xen cannot run here, so each is a real sshd of its own on 127.0.0.2 and
  127.0.0.3 (Linux routes all of 127/8 to lo) whose sessions find the fakes of
  ``tests/support/fake_tools`` first on PATH (sshd_config ``SetEnv``): ``xl``, ``iscsiadm``,
  each host with its own state file. ``xl migrate guest 127.0.0.3`` on xen1 moves the
  domain into xen2's state (``MIGLAB_FAKE_PEERS``); ``migrate_stage_delay_s`` makes a
  migration last, ``fail_migrate`` makes it fail, as the fake's docstring says.
  The network (what iscsiadm discovers) offers the tgt target to both hosts.
* The open-iscsi driver waits for the disk's udev link with ``test -b``, a shell
  builtin that no fake on PATH can answer. So each hypervisor sshd runs in a mount
  namespace of its own (``unshare -m``) with a private /dev: the few device nodes a
  shell needs, bound from the real /dev, and the by-path link of the lab's LUN as a
  block device node (never opened). The real /dev is not touched.

Nothing leaves loopback. :meth:`LoopbackLab.stop` ends every process it started and
the test's tmp_path holds every file.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.config import LabConfig, load_lab
from backend.sim.tools import iscsiadm as fake_iscsiadm
from tests.support.fake_tools import xl as fake_xl
from tests.support.sshd import Sshd
from tests.support.tgtd import Tgtd, disk_image

ROOT = Path(__file__).resolve().parents[2]
IQN = "iqn.2024-01.lab.loopback:disk1"
GUEST = "guest"
GUEST_CONFIG = "/etc/xen/guest.cfg"
HYPERVISORS = {"xen1": "127.0.0.2", "xen2": "127.0.0.3"}
GUEST_MEMORY_MB = 256

# Program name on the host -> how the fake is started (python arguments).
_FAKES = {
    "xl": ["-m", "tests.support.fake_tools.xl"],
    "iscsiadm": ["-m", "tests.support.fake_tools.iscsiadm"],
}

# Run by `unshare --mount --propagation private` before sshd: $1 a directory for the
# real /dev, $2 the block device path to create, then the command. Mounts made here
# vanish with the namespace's last process.
PRIVATE_DEV = """\
#!/bin/sh
set -e
real=$1 disk=$2
shift 2
mount --bind /dev "$real"
mount -t tmpfs -o mode=755 miglab-dev /dev
for node in null zero full random urandom tty; do
  touch "/dev/$node"
  mount --bind "$real/$node" "/dev/$node"
done
mkdir -p /dev/shm "${disk%/*}"
mount -t tmpfs -o mode=1777 miglab-shm /dev/shm
mknod "$disk" b 7 200
exec "$@"
"""


def _wrapper(env: dict[str, str], python_args: list[str]) -> str:
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    command = shlex.join([sys.executable, *python_args])
    return f'#!/bin/sh\nexport {exports}\nexec {command} "$@"\n'


@dataclass
class LoopbackLab:
    """The lab's processes and files; :meth:`lab` loads its lab.toml."""

    directory: Path
    guest: Sshd
    tgtd: Tgtd
    hypervisors: dict[str, Sshd] = field(default_factory=dict)

    # -- starting ---------------------------------------------------------------------

    @classmethod
    def start(cls, directory: Path, guest: Sshd) -> LoopbackLab:
        directory.mkdir(parents=True, exist_ok=True)
        tgtd = Tgtd(directory / "tgtd")
        lab = cls(directory, guest, tgtd)
        try:
            tgtd.start()
            disk_image(directory / "disk.img", 16 << 20)
            peers = {}
            for name, address in HYPERVISORS.items():
                peers[name] = peers[address] = str(lab.state_path(name))
            for name, address in HYPERVISORS.items():
                lab._start_hypervisor(name, address, json.dumps(peers))
            lab.reset()
            lab.lab_file.write_text(lab.lab_toml())
        except BaseException:
            lab.stop()
            raise
        return lab

    def _start_hypervisor(self, name: str, address: str, peers: str) -> None:
        bin_dir = self.directory / name / "bin"
        bin_dir.mkdir(parents=True)
        env = {
            "MIGLAB_FAKE_STATE": str(self.state_path(name)),
            "MIGLAB_FAKE_PEERS": peers,
            "PYTHONPATH": str(ROOT),
        }
        for program, python_args in _FAKES.items():
            path = bin_dir / program
            path.write_text(_wrapper(env, python_args))
            path.chmod(0o755)
        # The fakes first; then the usual directories, with sbin (iscsiadm's home).
        search = f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        # sshd itself, in a mount namespace with a /dev of its own (see the module doc).
        enter = self.directory / name / "private-dev"
        enter.write_text(PRIVATE_DEV)
        enter.chmod(0o755)
        real = self.directory / name / "real-dev"
        real.mkdir()
        launcher = self.directory / name / "sshd"
        unshare = ["unshare", "--mount", "--propagation", "private"]
        command = [*unshare, str(enter), str(real), self.disk, self.guest.sshd_path]
        launcher.write_text(f'#!/bin/sh\nexec {shlex.join(command)} "$@"\n')
        launcher.chmod(0o755)
        server = Sshd(
            str(launcher),
            self.directory / name / "sshd.d",
            address=address,
            extra_config=f"SetEnv PATH={search}",
        )
        self.hypervisors[name] = server
        server.setup(self.guest.client_key)
        server.start()

    def stop(self) -> None:
        for server in self.hypervisors.values():
            server.stop()
        self.tgtd.stop()

    # -- files ------------------------------------------------------------------------

    @property
    def lab_file(self) -> Path:
        return self.directory / "lab.toml"

    @property
    def portal(self) -> str:
        return self.tgtd.portal

    @property
    def disk(self) -> str:
        """The LUN's udev name on the hypervisor hosts (the guest's xl disk)."""
        return f"/dev/disk/by-path/ip-{self.portal}-iscsi-{IQN}-lun-1"

    def state_path(self, host: str) -> Path:
        return self.directory / f"{host}.state.json"

    def state(self, host: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path(host).read_text())
        return data

    def write_state(self, host: str, state: dict[str, Any]) -> None:
        self.state_path(host).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")

    def reset(self) -> None:
        """Both hypervisor hosts as new: Domain-0 only, no iSCSI session, the guest's
        xl config in place, the target on offer; the tgt export is left as it is."""
        config = (
            f"name = '{GUEST}'\nmemory = {GUEST_MEMORY_MB}\nvcpus = 1\n"
            f"disk = ['phy:{self.disk},xvda,w']\nvif = ['bridge=xenbr0']\n"
        )
        for name in HYPERVISORS:
            state: dict[str, Any] = {"xen": fake_xl.new_state(name)}
            fake_xl.add_config(state, GUEST_CONFIG, config)
            state["iscsiadm"] = fake_iscsiadm.new_state(
                f"iqn.1993-08.org.debian:01:{name}", HYPERVISORS[name]
            )
            fake_iscsiadm.offer_target(state, self.portal, IQN, [(0, False), (1, True)])
            self.write_state(name, state)

    def set_xl(self, host: str, **values: Any) -> None:
        """Change xl's state on ``host`` (``fail_migrate``, ``migrate_stage_delay_s``)."""
        state = self.state(host)
        state["xen"].update(values)
        self.write_state(host, state)

    def domains(self, host: str) -> list[str]:
        """The names of the domains on ``host`` (Domain-0 left out)."""
        return [d["name"] for d in self.state(host)["xen"]["domains"] if d["domid"] != 0]

    # -- lab.toml ---------------------------------------------------------------------

    def lab_toml(self) -> str:
        # Every sshd here trusts the guest sshd's client key.
        hosts = "".join(
            f"[hosts.{name}]\n"
            f'address = "{server.address}"\nport = {server.port}\nuser = "{server.user}"\n'
            f'identity = "{self.guest.client_key}"\nknown_hosts = "{server.known_hosts}"\n'
            "keepalive_s = 2.0\n\n"
            for name, server in self.hypervisors.items()
        )
        return f"""\
[lab]
name = "loopback"
link_mbit = 1000
description = "miglab's test lab on loopback: real sshd, tgtd, ping, sysbench; fake xl"

[hosts.storage]
address = "local"

{hosts}
[storage]
host = "storage"
driver = "tgt"
iqn = "{IQN}"
device = "{self.directory / "disk.img"}"
portal = "{self.portal}"
tgt_control_port = {self.tgtd.control_port}

[hypervisor]
driver = "xen"
hosts = {json.dumps(list(HYPERVISORS))}

[guest]
name = "{GUEST}"
address = "{self.guest.address}"
port = {self.guest.port}
user = "{self.guest.user}"
identity = "{self.guest.client_key}"
known_hosts = "{self.guest.known_hosts}"
vcpus = 1
memory_mb = {GUEST_MEMORY_MB}
config = "{GUEST_CONFIG}"
"""

    def lab(self) -> LabConfig:
        return load_lab(self.lab_file)
