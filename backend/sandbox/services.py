"""The sandbox's daemons and their files: SSH keys, sshd per namespace, tgtd and its disk.

Each daemon is a real one (OpenSSH's sshd, tgt's tgtd), started inside its namespace
with ``ip netns exec`` and recorded by pid (see :mod:`backend.sandbox.processes`).
Keys are made once and kept in the sandbox directory, so known_hosts stays valid from
one `up` to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from pathlib import Path

from backend.aio import wait_for
from backend.sandbox.processes import (
    ProcessRecord,
    ensure_running,
    is_running,
    spawn,
    stop,
    wait_stopped,
)
from backend.transport.base import HostRunner

SSH_PORT = 22
ISCSI_PORT = 3260
TGT_TID = 1
TGT_LUN = 1  # tgt keeps LUN 0 for its controller
TGT_SOCKET_DIR = Path("/var/run/tgtd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it (Debian makes it at boot)


# -- keys ------------------------------------------------------------------------------


async def ensure_keypair(runner: HostRunner, path: Path, comment: str) -> str:
    """An ed25519 key pair at ``path`` (made if missing); its public key line."""
    public = Path(f"{path}.pub")
    if not await asyncio.to_thread(public.is_file):
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(path.unlink, missing_ok=True)  # a private key without .pub
        argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
        (await runner.run(argv)).check()
    return (await asyncio.to_thread(public.read_text)).strip()


def known_hosts_line(address: str, public_key: str, port: int = SSH_PORT) -> str:
    """``ADDR TYPE KEY`` (``[ADDR]:PORT`` off port 22), the comment dropped."""
    key_type, key = public_key.split()[:2]
    host = address if port == SSH_PORT else f"[{address}]:{port}"
    return f"{host} {key_type} {key}"


# -- sshd ------------------------------------------------------------------------------


def sshd_config(*, address: str, host_key: Path, authorized_keys: Path) -> str:
    """Root by key only, on the namespace's address; forwarding to unix sockets stays
    on (QMP is reached that way)."""
    return f"""\
# Written by `miglab sandbox up`.
ListenAddress {address}
Port {SSH_PORT}
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized_keys}
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
LogLevel ERROR
"""


async def start_sshd(
    runner: HostRunner,
    sshd: str,
    *,
    host: str,
    netns: str,
    address: str,
    directory: Path,
    authorized_keys: Path,
    log: Path,
) -> tuple[ProcessRecord, str]:
    """Start sshd for ``host`` in its namespace; the record and its host key's public line."""
    host_key = directory / "ssh_host_ed25519_key"
    public = await ensure_keypair(runner, host_key, f"miglab-sandbox-{host}")
    config = directory / "sshd_config"
    text = sshd_config(address=address, host_key=host_key, authorized_keys=authorized_keys)
    await asyncio.to_thread(config.write_text, text)
    await asyncio.to_thread(PRIVSEP_DIR.mkdir, mode=0o755, exist_ok=True)
    # sshd re-executes itself per connection: it needs its absolute path.
    record = await spawn(
        runner, f"sshd@{host}", [sshd, "-D", "-e", "-f", str(config)], log=log, netns=netns
    )
    return record, public


async def wait_for_ssh(record: ProcessRecord, address: str, timeout: float = 15.0) -> None:
    """Until sshd answers with its banner on ``address`` (reached from here, the root
    namespace, over the bridge: the same path the console takes)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        await ensure_running(record)
        try:
            reader, writer = await wait_for(asyncio.open_connection(address, SSH_PORT), 2.0)
            try:
                banner = await wait_for(reader.readline(), 2.0)
                # Say who we are before leaving: a silent close is an error in sshd's log.
                writer.write(b"SSH-2.0-miglab-sandbox-probe\r\n")
                await writer.drain()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            if banner.startswith(b"SSH-"):
                return
            last = f"unexpected banner {banner[:40]!r}"
        except (OSError, asyncio.TimeoutError) as exc:
            last = str(exc) or type(exc).__name__
        if time.monotonic() > deadline:
            raise TimeoutError(f"{record.role}: no SSH banner from {address}:{SSH_PORT}: {last}")
        await asyncio.sleep(0.05)


# -- tgtd ------------------------------------------------------------------------------


def tgt_socket_files(port: int) -> list[Path]:
    return [TGT_SOCKET_DIR / f"socket.{port}", TGT_SOCKET_DIR / f"socket.{port}.lock"]


def _lock_held(lock: Path) -> bool:
    """Another process holds the POSIX lock on byte 0 of ``lock`` (tgtd's lockf)."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the lock if we took it
    return False


async def tgt_port_in_use(port: int) -> bool:
    """A tgtd runs with control port ``port``: it holds ``socket.PORT.lock`` with lockf
    (tgt's mgmt.c) for as long as it runs.

    Not by connecting to its socket: tgt 1.0.85's mgmt.c reads EOF from a client that
    closes without a request and, ``errno`` being a stale EAGAIN, keeps the connection and
    polls it forever, one core at 100 % (seen: each `sandbox up` probing the ports of the
    sandboxes already up left their tgtd spinning; the Xen lab's migrations ran 2-3x
    slower on the 2-core machine)."""
    return await asyncio.to_thread(_lock_held, tgt_socket_files(port)[1])


def _tgtadm(port: int, *args: str) -> list[str]:
    return ["tgtadm", "-C", str(port), *args]


async def start_tgtd(
    runner: HostRunner, tgtd: str, *, netns: str, portal: str, port: int, log: Path
) -> tuple[ProcessRecord, list[str]]:
    """tgtd in the foreground (``-f``) with its own control port; the record, and the
    files it will create (those that did not exist before: ours to remove), its socket
    directory last."""
    candidates = [*tgt_socket_files(port), TGT_SOCKET_DIR]
    new_files = [str(p) for p in candidates if not await asyncio.to_thread(p.exists)]
    argv = [tgtd, "-f", "-C", str(port), "--iscsi", f"portal={portal}:{ISCSI_PORT}"]
    record = await spawn(runner, "tgtd@storage", argv, log=log, netns=netns)
    return record, new_files


async def wait_for_tgtd(
    runner: HostRunner, record: ProcessRecord, port: int, timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        await ensure_running(record)
        result = await runner.run(
            _tgtadm(port, "--lld", "iscsi", "--op", "show", "--mode", "target"), log_output=False
        )
        if result.ok:
            return
        if time.monotonic() > deadline:
            result.check()
        await asyncio.sleep(0.05)


async def export_disk(runner: HostRunner, port: int, iqn: str, disk: Path) -> None:
    """Target ``iqn`` with the disk as LUN 1, open to every initiator (the lab's own net)."""
    tid = str(TGT_TID)
    for args in (
        ("--op", "new", "--mode", "target", "--tid", tid, "-T", iqn),
        ("--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", str(TGT_LUN),
         "-b", str(disk)),
        ("--op", "bind", "--mode", "target", "--tid", tid, "-I", "ALL"),
    ):  # fmt: skip
        (await runner.run(_tgtadm(port, "--lld", "iscsi", *args))).check()


async def stop_tgtd(runner: HostRunner, record: ProcessRecord, port: int) -> str:
    """tgtd ignores SIGTERM: delete its target and then the system; SIGKILL if it stays."""
    if not await asyncio.to_thread(is_running, record.pid, record.start_time):
        return "not running"
    await runner.run(
        _tgtadm(port, "--lld", "iscsi", "--op", "delete", "--mode", "target",
                "--tid", str(TGT_TID), "--force"),
    )  # fmt: skip
    await runner.run(_tgtadm(port, "--op", "delete", "--mode", "system"))
    if await wait_stopped(record.pid, record.start_time, 5.0):
        return "stopped"
    return await stop(record.pid, record.start_time, grace=1.0)


async def remove_tgt_socket_files(files: list[str], port: int) -> None:
    """The control socket files our tgtd left; only when no tgtd answers there any more.
    Their directory goes too if we made it and nobody else's socket is in it."""
    if await tgt_port_in_use(port):
        return
    for name in files:
        path = Path(name)
        if path == TGT_SOCKET_DIR:
            with contextlib.suppress(OSError):  # not empty: another tgtd uses it
                await asyncio.to_thread(path.rmdir)
        else:
            await asyncio.to_thread(path.unlink, missing_ok=True)


# -- the shared disk -------------------------------------------------------------------


async def ensure_disk(runner: HostRunner, path: Path, size_mb: int) -> bool:
    """A sparse ext4 image at ``path``, made once (the lab's disk keeps its files across
    `down`/`up`, like a real one). True when it was made now."""
    if await asyncio.to_thread(path.is_file):
        return False
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")

    def allocate() -> None:
        with open(partial, "wb") as handle:
            handle.truncate(size_mb << 20)

    await asyncio.to_thread(allocate)
    try:
        argv = ["mkfs.ext4", "-q", "-F", "-L", "miglab-disk", "-m", "0", str(partial)]
        (await runner.run(argv, timeout=300)).check()
        await asyncio.to_thread(os.replace, partial, path)
    finally:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
    return True
