"""One kept SSH connection per host (asyncssh), with pooled shells and exec channels.

- Connects honouring ~/.ssh/config, the SSH agent, an identity file and a
  known_hosts file; an unknown or changed host key is refused with a message
  that says what to do, unless the host says ``host_key = "accept-new"`` (then
  an unknown key is recorded, a changed one is still refused).
- Jump hosts: the connection is tunnelled through another :class:`SshHost`.
- Keepalives notice a dead link; the host then reports ``disconnected`` and
  reconnects with backoff. Commands running on the lost connection end as
  failed with the reason.
- Short commands go to a :class:`ShellPool`; ``long_running`` ones (probes,
  migrations) get their own exec channel so they never block the pool.
- Every step of a command (a free shell or channel, opening it, the command) is
  inside its one deadline: a host that stops answering (stopped, hung) ends each
  command by its timeout even with keepalives off. Opening a channel is bounded by
  connect_timeout_s even for a command without a timeout.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from backend.aio import wait_for
from backend.events import HostState
from backend.transport.base import (
    CommandRecorder,
    CommandResult,
    Expired,
    HostRunner,
    LineCallback,
    Publish,
    StreamReaderLike,
    StreamWriterLike,
    TransportError,
    command_line,
)
from backend.transport.shellpool import RemoteShell, ShellChannel, ShellDied, ShellPool
from backend.transport.sshlib import asyncssh

KILL_GRACE_S = 2.0
# The most that stopping a timed-out or cancelled command adds: the pid (KILL_GRACE_S),
# the kill script (TERM, KILL_GRACE_S, KILL) on a channel of its own, the last output.
STOP_GRACE_S = 3 * KILL_GRACE_S
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# sshd allows 10 sessions per connection by default (MaxSessions); keep below it.
MAX_EXEC_CHANNELS = 5

# Stops a command's processes. "group": an exec channel's command leads its own
# process group under OpenSSH (sshd calls setsid), so signal the group; dropbear does
# not, so when the pid is not a group leader fall back to its tree. "tree": a pooled
# shell's background job shares the shell's group, so walk its children.
KILL_SCRIPT = r"""
mode=$1; pid=$2
tree() { for c in $(pgrep -P "$1" 2>/dev/null); do tree "$c"; done; echo "$1"; }
pgid=
if read -r stat < "/proc/$pid/stat"; then set -- ${stat##*) }; pgid=$3; fi
if [ "$mode" = group ] && [ "$pgid" = "$pid" ]; then pids="-$pid"; else pids=$(tree "$pid"); fi
kill -TERM $pids 2>/dev/null
i=0
while [ $i -lt 20 ]; do
  alive=0
  for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && exit 0
  sleep 0.1; i=$((i+1))
done
kill -KILL $pids 2>/dev/null
exit 0
"""


@dataclass(frozen=True)
class SshTarget:
    """How to reach one host; built from lab.toml's [hosts.NAME]."""

    name: str
    address: str
    port: int | None = None  # None: from ~/.ssh/config, else 22
    user: str | None = None  # None: from ~/.ssh/config, else the local user
    identity: str | None = None  # None: the agent and ~/.ssh/id_*
    passphrase: Callable[[], str] | None = None  # read only when needed, never stored
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    host_key: Literal["strict", "accept-new"] = "strict"
    connect_timeout_s: float = 10.0
    keepalive_s: float = 5.0
    keepalive_count_max: int = 3
    pool_size: int = 4
    # Send each command as a plain `command_line(argv)` exec request, as `ssh host cmd`
    # does, with no pooled shell and no pid marker; cancelling closes the channel. Only
    # for servers that are not a POSIX shell (the simulated lab's in-process hosts).
    plain_exec: bool = False

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts or "~/.ssh/known_hosts").expanduser()

    @property
    def display(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.address}{port}"


class _HostKeyPolicy:
    """Decides on host keys that are not in known_hosts (asyncssh asks only for those)."""

    def __init__(self, target: SshTarget, known: asyncssh.SSHKnownHosts) -> None:
        self.target = target
        self.known = known
        self.problem: Literal["unknown", "changed"] | None = None
        self.offered: asyncssh.SSHKey | None = None
        self.accepted_new = False

    def validate(self, host: str, addr: str, port: int) -> Callable[[asyncssh.SSHKey], bool]:
        def check(key: asyncssh.SSHKey) -> bool:
            self.offered = key
            trusted = self.known.match(host, addr, port)[0]
            if trusted:  # the host is known under another key
                self.problem = "changed"
                return False
            if self.target.host_key == "accept-new":
                self.accepted_new = True
                return True
            self.problem = "unknown"
            return False

        return check

    def explain(self) -> str:
        t = self.target
        file = t.known_hosts_path
        entry = f"[{t.address}]:{t.port}" if t.port and t.port != 22 else t.address
        fingerprint = self.offered.get_fingerprint() if self.offered else "?"
        if self.problem == "changed":
            return (
                f"the host key of {entry} has CHANGED (it now offers {fingerprint}); this can be "
                f"a reinstalled host or someone in the middle. If you know why it changed, "
                f"remove the old key with `ssh-keygen -R '{entry}' -f {file}` and connect again."
            )
        return (
            f"the host key of {entry} is not known (it offers {fingerprint}). Check that "
            f"fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then "
            f"add it to {file} (e.g. `ssh-keyscan -p {t.port or 22} {t.address} >> {file}`), "
            f'or set host_key = "accept-new" for host {t.name} in lab.toml.'
        )


class _Client(asyncssh.SSHClient):
    def __init__(self, owner: SshHost, policy: _HostKeyPolicy) -> None:
        self._owner = owner
        self._policy = policy

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        return self._policy.validate(host, addr, port)(key)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._connection_lost(self, exc)


# Bounds on the local files read before connecting: a key is a few KiB; a known_hosts
# of a large site is a few MiB. Anything bigger is not such a file (/dev/zero, a disk).
MAX_IDENTITY_BYTES = 1024 * 1024
MAX_KNOWN_HOSTS_BYTES = 64 * 1024 * 1024

_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def _check_regular_file(host: str, what: str, path: Path, limit: int) -> bool:
    """True if ``path`` is a regular file of at most ``limit`` bytes, False if it does
    not exist; anything else is refused saying what the path is."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise TransportError(host, f"cannot use {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise TransportError(host, f"{what} {path} is {kind}, not a file")
    if info.st_size > limit:
        raise TransportError(
            host, f"{what} {path} is {info.st_size} bytes, too large to be {what} (a mistake?)"
        )
    return True


def _read_known_hosts(host: str, path: Path) -> asyncssh.SSHKnownHosts:
    if not _check_regular_file(host, "known_hosts", path, MAX_KNOWN_HOSTS_BYTES):
        return asyncssh.import_known_hosts("")  # no file: nothing is trusted (never "no checking")
    try:
        return asyncssh.read_known_hosts(str(path))
    except OSError as exc:
        raise TransportError(host, f"cannot read known_hosts {path}: {exc.strerror}") from None
    except (ValueError, asyncssh.Error) as exc:
        raise TransportError(host, f"cannot parse known_hosts {path}: {exc}") from None


def _load_identity(target: SshTarget) -> Sequence[asyncssh.SSHKeyPair]:
    """The identity's key pair (and its -cert.pub), read and decrypted off the event loop."""
    host, path = target.name, Path(target.identity or "")
    if not _check_regular_file(host, "identity", path, MAX_IDENTITY_BYTES):
        raise TransportError(host, f"identity file {path} does not exist")
    passphrase = None
    if target.passphrase is not None:
        try:
            passphrase = target.passphrase()
        except Exception as exc:  # the secret's own error says where it should come from
            raise TransportError(
                host, f"cannot read the passphrase of identity {path}: {exc}"
            ) from None
    try:
        return asyncssh.load_keypairs([str(path)], passphrase)
    except OSError as exc:
        raise TransportError(host, f"cannot read identity {path}: {exc.strerror}") from None
    except asyncssh.KeyEncryptionError as exc:
        raise TransportError(host, f"cannot decrypt identity {path}: {exc}") from None
    except asyncssh.KeyImportError as exc:
        if passphrase is None and "assphrase" in str(exc):
            raise TransportError(
                host,
                f"identity {path} is protected by a passphrase; give it as "
                f'identity_passphrase = {{ env = "VAR" }} or {{ file = "path" }}',
            ) from None
        raise TransportError(host, f"identity {path} is not a usable private key: {exc}") from None


def _append_known_host(path: Path, target: SshTarget, key: asyncssh.SSHKey) -> None:
    entry = (
        f"[{target.address}]:{target.port}"
        if target.port and target.port != 22
        else (target.address)
    )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write(f"{entry} {key.export_public_key('openssh').decode().strip()}\n")


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - _loop_time())


def _earliest(deadline: float | None, other: float) -> float:
    return other if deadline is None else min(deadline, other)


async def _within(step: Awaitable[Any], deadline: float | None, what: str) -> Any:
    """Await a step before the command starts; :class:`Expired` if the deadline passes."""
    try:
        return await wait_for(step, _remaining(deadline))
    except TimeoutError:
        raise Expired(what) from None


def _close_when_opened(opening: asyncio.Future[asyncssh.SSHClientProcess[bytes]]) -> None:
    """A channel confirmed after its command gave up on it is closed at once."""
    if opening.cancelled() or opening.exception() is not None:
        return
    opening.result().close()


async def _pump(
    reader: asyncssh.SSHReader[bytes],
    stream: Literal["stdout", "stderr"],
    recorder: CommandRecorder,
    pid_marker: tuple[bytes, asyncio.Future[int]] | None,
) -> None:
    # Incremental: a UTF-8 character split across two reads stays one character.
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    head = b""
    while chunk := await reader.read(65536):
        if pid_marker is not None:
            # The first stderr line is our pid marker; hold output until it is complete.
            head += chunk
            if b"\n" not in head:
                continue
            first, _, chunk = head.partition(b"\n")
            marker, future = pid_marker
            if first.startswith(marker):
                future.set_result(int(first[len(marker) :]))
            else:
                chunk = head
            pid_marker = None
        recorder.feed(stream, decoder.decode(chunk))
    recorder.feed(stream, decoder.decode(b"", final=True))


class SshHost(HostRunner):
    """A host reached over SSH; ``connect()`` once, then ``run()`` as often as needed."""

    def __init__(self, target: SshTarget, publish: Publish, via: SshHost | None = None) -> None:
        self.name = target.name
        self.target = target
        self._publish = publish
        self._via = via
        self._conn: asyncssh.SSHClientConnection | None = None
        self._client: _Client | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._lost_reason: str | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._pool = ShellPool(self._open_shell, target.pool_size)
        self._exec_slots = asyncio.Semaphore(MAX_EXEC_CHANNELS)
        self.rtt_ms: float | None = None

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    # -- connecting -----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection; raises :class:`TransportError` saying what to do."""
        self._closing = False
        self._publish(HostState(host=self.name, state="connecting"))
        try:
            await self._open()
        except TransportError as exc:
            self._publish(HostState(host=self.name, state="failed", reason=exc.message))
            raise
        await self._announce_connected()

    async def _open(self) -> None:
        t = self.target
        if self._via is not None and not self._via.connected:
            raise TransportError(self.name, f"jump host {self._via.name} is not connected")
        keys = None
        if t.identity is not None:
            keys = await asyncio.to_thread(_load_identity, t)
        known = await asyncio.to_thread(_read_known_hosts, self.name, t.known_hosts_path)
        policy = _HostKeyPolicy(t, known)
        options: dict[str, Any] = {
            "connect_timeout": t.connect_timeout_s,
            "keepalive_interval": t.keepalive_s,
            "keepalive_count_max": t.keepalive_count_max,
        }
        if t.known_hosts is not None:
            options["known_hosts"] = known
        # else asyncssh reads ~/.ssh/config's UserKnownHostsFile or ~/.ssh/known_hosts
        if t.port is not None:
            options["port"] = t.port
        if t.user is not None:
            options["username"] = t.user
        if keys is not None:
            options["client_keys"] = keys
        if self._via is not None:
            options["tunnel"] = self._via._conn
        try:
            conn, client = await asyncssh.create_connection(
                lambda: _Client(self, policy), t.address, **options
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise TransportError(self.name, policy.explain()) from exc
        except asyncssh.PermissionDenied as exc:
            how = f"identity {t.identity}" if t.identity else "the SSH agent and ~/.ssh keys"
            raise TransportError(
                self.name, f"{t.display} refused the login ({how}): {exc.reason}"
            ) from exc
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                why = f"no answer within {t.connect_timeout_s:g} s"
            raise TransportError(self.name, f"cannot reach {t.display}: {why}") from exc
        if policy.accepted_new and policy.offered is not None:
            await asyncio.to_thread(_append_known_host, t.known_hosts_path, t, policy.offered)
        self._conn, self._client = conn, cast(_Client, client)
        self._lost_reason = None
        self._ready.set()

    async def _announce_connected(self) -> None:
        # The first command opens a pooled shell; time the second, a warm round trip.
        await self.run(["true"], timeout=self.target.connect_timeout_s, log_output=False)
        started = time.perf_counter()
        result = await self.run(["true"], timeout=self.target.connect_timeout_s, log_output=False)
        self.rtt_ms = round((time.perf_counter() - started) * 1000, 3) if result.ok else None
        self._publish(HostState(host=self.name, state="connected", rtt_ms=self.rtt_ms))

    def _connection_lost(self, client: _Client, exc: Exception | None) -> None:
        if client is not self._client:
            return  # an old connection's late notice
        self._ready.clear()
        self._conn = self._client = None
        self._pool.reset()
        if self._closing:
            return
        self._lost_reason = str(exc) if exc else "the server closed the connection"
        self._publish(HostState(host=self.name, state="disconnected", reason=self._lost_reason))
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closing:
            delay = RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
            await asyncio.sleep(delay)
            attempt += 1
            self._publish(HostState(host=self.name, state="connecting", reason=f"try {attempt}"))
            try:
                await self._open()
            except TransportError as exc:
                self._publish(HostState(host=self.name, state="disconnected", reason=exc.message))
                continue
            await self._announce_connected()
            return

    async def _connection(self, deadline: float | None) -> asyncssh.SSHClientConnection:
        """The live connection, waiting a little (never past ``deadline``) for a reconnect."""
        if not self._ready.is_set():
            limit = _earliest(deadline, _loop_time() + self.target.connect_timeout_s)
            try:
                await wait_for(self._ready.wait(), _remaining(limit))
            except TimeoutError:
                reason = self._lost_reason or "not connected"
                raise TransportError(self.name, f"not connected: {reason}") from None
        assert self._conn is not None
        return self._conn

    async def _open_process(
        self, command: str, deadline: float | None, what: str
    ) -> asyncssh.SSHClientProcess[bytes]:
        """Open a session channel running ``command``, by ``deadline`` at the latest.

        A host that accepts TCP but does not run (stopped, swapping to death) never
        confirms a channel; without a bound the caller would wait for keepalives, or
        forever when they are off. With no deadline the bound is connect_timeout_s.
        """
        conn = await self._connection(deadline)
        no_answer = _loop_time() + self.target.connect_timeout_s
        limit = _earliest(deadline, no_answer)
        opening = asyncio.ensure_future(conn.create_process(command, encoding=None))
        try:
            return await wait_for(asyncio.shield(opening), _remaining(limit))
        except TimeoutError:
            opening.add_done_callback(_close_when_opened)
            if limit != no_answer:
                raise Expired(f"opening {what}") from None
            raise TransportError(
                self.name,
                f"could not open {what}: no answer within {self.target.connect_timeout_s:g} s",
            ) from None
        except asyncio.CancelledError:
            opening.add_done_callback(_close_when_opened)
            raise
        except (asyncssh.Error, OSError) as exc:
            raise TransportError(self.name, f"could not open {what}: {exc}") from exc

    async def _open_shell(self, deadline: float | None) -> ShellChannel:
        process = await self._open_process("exec /bin/sh", deadline, "a shell")
        return ShellChannel(process.stdin, process.stdout, process.stderr, process.close)

    # -- running commands -----------------------------------------------------------------

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = 60.0,
        on_line: LineCallback | None = None,
        log_output: bool = True,
        long_running: bool = False,
        redact: Sequence[str] = (),
    ) -> CommandResult:
        plain = self.target.plain_exec
        channel: Literal["pool", "exec"] = "exec" if long_running or plain else "pool"
        recorder = CommandRecorder(
            self.name, argv, self._publish, channel, on_line, log_output, redact
        )
        # One deadline for everything: the wait for a connection, a free shell or
        # channel, opening it, and the command itself.
        deadline = None if timeout is None else _loop_time() + timeout
        try:
            if plain:
                return await self._run_plain(argv, recorder, deadline)
            if long_running:
                return await self._run_exec(argv, recorder, deadline)
            return await self._run_pooled(argv, recorder, deadline)
        except Expired as exc:
            return recorder.finish(None, f"timeout ({exc} took too long)")
        except TransportError as exc:
            return recorder.finish(None, exc.message)
        except asyncio.CancelledError:
            recorder.finish(None, "cancelled")  # no-op if the command already finished
            raise

    async def _run_pooled(
        self, argv: Sequence[str], recorder: CommandRecorder, deadline: float | None
    ) -> CommandResult:
        async with self._pool.shell(deadline) as shell:
            try:
                pid, status, stderr_done = await shell.run(argv, recorder)
            except ShellDied as exc:
                return recorder.finish(None, f"connection lost: {self._lost_reason or exc}")
            try:
                code = await wait_for(asyncio.shield(status), _remaining(deadline))
                await wait_for(asyncio.shield(stderr_done), _remaining(deadline))
                return recorder.finish(code)
            except TimeoutError:
                await self._stop_pooled(shell, pid, status, stderr_done)
                return recorder.finish(None, "timeout")
            except asyncio.CancelledError:
                await asyncio.shield(self._stop_pooled(shell, pid, status, stderr_done))
                recorder.finish(None, "cancelled")
                raise
            except ShellDied as exc:
                return recorder.finish(None, f"connection lost: {self._lost_reason or exc}")

    async def _stop_pooled(
        self,
        shell: RemoteShell,
        pid: asyncio.Future[int],
        status: asyncio.Future[int],
        stderr_done: asyncio.Future[None],
    ) -> None:
        """Kill a pooled command's tree; within STOP_GRACE_S, else give up on the shell."""
        give_up = _loop_time() + STOP_GRACE_S
        try:
            known = await wait_for(asyncio.shield(pid), KILL_GRACE_S)
            await self._kill(known, "tree", give_up)
            await wait_for(asyncio.gather(status, stderr_done), _remaining(give_up))
        except (TimeoutError, ShellDied, TransportError):
            shell.close()  # it did not come back: never reuse it

    async def _run_exec(
        self,
        argv: Sequence[str],
        recorder: CommandRecorder,
        deadline: float | None,
        kill: bool = False,
    ) -> CommandResult:
        marker = "\x1eMIGLAB" + os.urandom(8).hex() + ":pid:"
        # sshd makes the session's shell a session leader; `exec` keeps that pid, so the
        # command's process group is the pid it reports here.
        command = f"printf '{marker}%d\\n' \"$$\" >&2; exec {command_line(argv)}"
        # A kill must never wait for a slot held by the very command it stops.
        if not kill:
            await _within(self._exec_slots.acquire(), deadline, "waiting for a free channel")
        try:
            process = await self._open_process(command, deadline, "a channel")
            process.stdin.write_eof()
            pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            pumps = asyncio.gather(
                _pump(process.stdout, "stdout", recorder, None),
                _pump(process.stderr, "stderr", recorder, (marker.encode(), pid)),
            )
            try:
                await wait_for(asyncio.shield(pumps), _remaining(deadline))
                await wait_for(process.wait_closed(), _remaining(deadline))
            except TimeoutError:
                if not kill:  # a kill that overran is abandoned, not killed in turn
                    await self._stop_exec(pid, pumps)
                return recorder.finish(None, "timeout")
            except asyncio.CancelledError:
                if not kill:
                    await asyncio.shield(self._stop_exec(pid, pumps))
                recorder.finish(None, "cancelled")
                raise
            except (asyncssh.Error, OSError) as exc:
                return recorder.finish(None, f"connection lost: {self._lost_reason or exc}")
            finally:
                process.close()
        finally:
            if not kill:
                self._exec_slots.release()
        if process.exit_status is not None and process.exit_status >= 0:
            return recorder.finish(process.exit_status)
        if process.exit_signal is not None:
            return recorder.finish(None, f"killed by signal {process.exit_signal[0]}")
        return recorder.finish(None, f"connection lost: {self._lost_reason or 'channel closed'}")

    async def _run_plain(
        self, argv: Sequence[str], recorder: CommandRecorder, deadline: float | None
    ) -> CommandResult:
        await _within(self._exec_slots.acquire(), deadline, "waiting for a free channel")
        try:
            process = await self._open_process(command_line(argv), deadline, "a channel")
            process.stdin.write_eof()
            pumps = asyncio.gather(
                _pump(process.stdout, "stdout", recorder, None),
                _pump(process.stderr, "stderr", recorder, None),
            )
            try:
                await wait_for(asyncio.shield(pumps), _remaining(deadline))
                await wait_for(process.wait_closed(), _remaining(deadline))
            except TimeoutError:
                return recorder.finish(None, "timeout")
            except asyncio.CancelledError:
                recorder.finish(None, "cancelled")
                raise
            except (asyncssh.Error, OSError) as exc:
                return recorder.finish(None, f"connection lost: {self._lost_reason or exc}")
            finally:
                process.close()
        finally:
            self._exec_slots.release()
        if process.exit_status is not None and process.exit_status >= 0:
            return recorder.finish(process.exit_status)
        return recorder.finish(None, f"connection lost: {self._lost_reason or 'channel closed'}")

    async def _stop_exec(self, pid: asyncio.Future[int], pumps: asyncio.Future[Any]) -> None:
        """Kill an exec command's group and collect its last output, within STOP_GRACE_S."""
        give_up = _loop_time() + STOP_GRACE_S
        with contextlib.suppress(TimeoutError, TransportError):
            known = await wait_for(asyncio.shield(pid), KILL_GRACE_S)
            await self._kill(known, "group", give_up)
        with contextlib.suppress(Exception):
            await wait_for(pumps, _remaining(give_up))

    async def _kill(self, pid: int, mode: Literal["tree", "group"], deadline: float) -> None:
        """Stop a process (tree or group) on this host from a channel of its own."""
        argv = ["sh", "-c", KILL_SCRIPT, "miglab-kill", mode, str(pid)]
        recorder = CommandRecorder(self.name, argv, self._publish, "exec", log_output=False)
        try:
            result = await self._run_exec(argv, recorder, deadline, kill=True)
        except Expired as exc:
            result = recorder.finish(None, f"timeout ({exc} took too long)")
        except TransportError as exc:
            result = recorder.finish(None, exc.message)
        if result.failure is not None:
            raise TransportError(self.name, f"could not stop pid {pid}: {result.failure}")

    async def open_unix_stream(self, path: str) -> tuple[StreamReaderLike, StreamWriterLike]:
        conn = await self._connection(None)
        try:
            reader, writer = await wait_for(
                conn.open_unix_connection(path, encoding=None), self.target.connect_timeout_s
            )
        except TimeoutError:
            raise TransportError(
                self.name,
                f"cannot open unix socket {path}: "
                f"no answer within {self.target.connect_timeout_s:g} s",
            ) from None
        except (asyncssh.Error, OSError) as exc:
            raise TransportError(self.name, f"cannot open unix socket {path}: {exc}") from exc
        return reader, writer

    def drop(self) -> None:
        """Abort the connection as a network failure would (for tests and the console)."""
        if self._conn is not None:
            self._conn.abort()

    async def close(self) -> None:
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        self._pool.reset()
        conn = self._conn
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                # A host that stopped answering cannot complete a clean close.
                await wait_for(conn.wait_closed(), KILL_GRACE_S)
            conn.abort()
        self._ready.clear()
        self._publish(HostState(host=self.name, state="closed"))
