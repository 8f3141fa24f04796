"""A real OpenSSH sshd on 127.0.0.1 for tests: random port, generated keys, its own config.

Each instance lives in its own directory: host key, a client key pair, an
authorized_keys file and a known_hosts file that trusts this sshd (as
``[127.0.0.1]:PORT``), so a test can point miglab at it exactly as a user points
it at a real host.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


@dataclass
class Sshd:
    """One running sshd; ``stop()`` ends it (idempotent)."""

    sshd_path: str
    directory: Path
    port: int = field(default_factory=free_port)
    address: str = "127.0.0.1"
    user: str = field(default_factory=getpass.getuser)
    extra_config: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_key(self) -> Path:
        return self.directory / "client_ed25519"

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def log_path(self) -> Path:
        return self.directory / "sshd.log"

    def setup(self, client_key: Path | None = None) -> None:
        """Generate keys and config. ``client_key`` reuses another sshd's client key."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        keygen(self.host_key, "miglab-test-host")
        if client_key is None:
            keygen(self.client_key, "miglab-test-client")
            client_key = self.client_key
        (self.directory / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
        host_pub = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[{self.address}]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        # sshd keeps the first value of a keyword, so the caller's lines go first.
        config = f"""\
{self.extra_config}
ListenAddress {self.address}
Port {self.port}
HostKey {self.host_key}
PidFile {self.directory}/sshd.pid
AuthorizedKeysFile {self.directory}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
MaxSessions 64
MaxStartups 64:30:128
LogLevel ERROR
"""
        (self.directory / "sshd_config").write_text(config)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.sshd_path, "-D", "-e", "-f", str(self.directory / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("ab"),
        )
        # Until it listens or dies, however long a loaded machine takes to start it (no
        # deadline of its own: a hang is the test's timeout).
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log_path.read_text()}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def host_toml(self, name: str, **extra: str) -> str:
        """A ``[hosts.NAME]`` table for lab.toml that reaches this sshd."""
        lines = [
            f"[hosts.{name}]",
            f'address = "{self.address}"',
            f"port = {self.port}",
            f'user = "{self.user}"',
            f'identity = "{self.client_key}"',
            f'known_hosts = "{self.known_hosts}"',
        ]
        lines += [f"{key} = {value}" for key, value in extra.items()]
        return "\n".join(lines) + "\n"


def loopback_xen_lab(
    sshd: Sshd, disk: Path, *, tgt_control_port: int | None = None, guest_port: int | None = None
) -> str:
    """A Xen lab.toml whose three hosts are ``sshd`` and whose guest is 127.0.0.1: real
    SSH, no xl or tgtd behind it (the test says which of the lab's commands it needs)."""
    control = f"tgt_control_port = {tgt_control_port}\n" if tgt_control_port else ""
    port = f"port = {guest_port}\n" if guest_port else ""
    return f"""\
[lab]
name = "loopback"
link_mbit = 1000

{sshd.host_toml("storage")}
{sshd.host_toml("xen1")}
{sshd.host_toml("xen2")}
[storage]
host = "storage"
driver = "tgt"
iqn = "iqn.2026-12.test.miglab:disk"
device = "{disk}"
portal = "127.0.0.1:{free_port()}"
{control}
[hypervisor]
driver = "xen"
hosts = ["xen1", "xen2"]

[guest]
name = "guest"
address = "127.0.0.1"
{port}vcpus = 1
memory_mb = 256
config = "/etc/xen/guest.cfg"
"""
