"""What the target and initiator drivers share for work on a host beyond one command.

* A failed command described with its host, argv and stderr (:func:`describe_failure`),
  and what a path on the host is (:func:`device_kind`).
* CHAP's user and secret from ``[storage] chap``, checked before a tool sees them.
* Getting a secret or a private file to a host without it ever appearing in an event.
  The transport logs every argv (``command.started``) and the tail of every output
  (``command.finished``, even with ``log_output=False``), and has no stdin, so a CHAP
  password must neither be an argument nor be printed. Instead the bytes travel over
  an SSH stream to a Unix socket (:meth:`HostRunner.open_unix_stream`) that a small
  one-shot ``python3`` helper on the host listens on, in a fresh ``mktemp -d``
  directory (mode 0700), and the command that needs the secret reads it from the
  file there (:func:`run_with_secret`). The directory is removed afterwards.
  Needs ``python3`` on that host (only when CHAP is configured, or an IET
  ``ietd.conf`` holds passwords).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from backend.aio import wait_for
from backend.config import chap_secret_problem, chap_user_problem
from backend.drivers.base import DriverError, HostCommand, Planner
from backend.tomlfile import ConfigError
from backend.transport.base import CommandFailed, CommandResult, HostRunner

if TYPE_CHECKING:
    from backend.config import Storage

__all__ = [
    "PUT_FILE",
    "SecretCommand",
    "chap_user",
    "describe_failure",
    "device_kind",
    "mutate_with_secret",
    "read_private_file",
    "reveal_chap",
    "run_with_secret",
    "secret_file",
    "write_private_file",
]


# --- small shared pieces -----------------------------------------------------------------


def describe_failure(result: CommandResult, what: str = "") -> str:
    """One paragraph naming the host, the command and its stderr (and ``what`` it meant)."""
    text = str(CommandFailed(result))
    if not result.stderr.strip() and result.stdout.strip():
        text += f": {result.stdout.strip()[-2000:]}"  # some tools (iscsi-ls) report on stdout
    return f"{text} [{what}]" if what else text


def chap_user(storage: Storage) -> str:
    """[storage] chap's user, refused when a target tool's syntax cannot carry it.

    lab.toml's loader already refuses such a name; this guards a Storage made in code,
    since the name goes into ``--params=IncomingUser=USER,...`` and ``userid=USER``.
    """
    if storage.chap is None:
        raise DriverError("[storage] has no chap")
    problem = chap_user_problem(storage.chap.user)
    if problem is not None:
        raise DriverError(f"storage.chap.user: {problem}; not passing it to the target tool")
    return storage.chap.user


def reveal_chap(storage: Storage) -> tuple[str, str] | None:
    """(user, secret) when [storage] has CHAP; the secret is read now."""
    if storage.chap is None:
        return None
    user = chap_user(storage)
    try:
        secret = storage.chap.secret.reveal()
    except ConfigError as exc:
        raise DriverError(f"CHAP secret for storage.chap: {exc}") from None
    problem = chap_secret_problem(secret)
    if problem is not None:
        raise DriverError(problem)
    return user, secret


async def device_kind(runner: HostRunner, path: str) -> Literal["block", "file", "missing"]:
    """Whether ``path`` on the host is a block device, a regular file, or absent."""
    for flag, kind in (("-b", "block"), ("-f", "file")):
        result = await runner.run(["test", flag, path])
        if result.failure is not None:
            raise DriverError(describe_failure(result))
        if result.ok:
            return "block" if kind == "block" else "file"
    return "missing"


# --- private files over a Unix socket ------------------------------------------------------

# Runs on the host: serve one connection on DIR/channel, then exit. "get" sends
# "ok N\n" + the file (or "missing\n"); "put" stores what arrives until EOF in PATH
# (mode 0600) and answers "stored N\n". DIR is private (mktemp -d), so only its owner
# can connect.
_CHANNEL = r"""
import os, socket, sys
mode, directory, path, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
where = os.path.join(directory, "channel")
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(where)
server.listen(1)
server.settimeout(timeout)
print("ready", flush=True)
conn, _ = server.accept()
conn.settimeout(timeout)
if mode == "get":
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        conn.sendall(b"ok %d\n" % len(data) + data)
    except FileNotFoundError:
        conn.sendall(b"missing\n")
else:
    chunks = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    conn.sendall(b"stored %d\n" % len(data))
conn.close()
server.close()
os.unlink(where)
"""

CHANNEL_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def _private_dir(runner: HostRunner) -> AsyncIterator[str]:
    result = await runner.run(["mktemp", "-d", "-t", "miglab.XXXXXXXX"])
    directory = result.stdout.strip()
    if not result.ok or not directory.startswith("/") or "/miglab." not in directory:
        raise DriverError(describe_failure(result, "cannot make a private directory"))
    try:
        yield directory
    finally:
        # Shielded: a cancelled operation must still not leave a secret behind.
        await asyncio.shield(runner.run(["rm", "-rf", "--", directory]))


async def _channel(
    runner: HostRunner, mode: Literal["get", "put"], directory: str, path: str, payload: bytes
) -> bytes:
    ready = asyncio.Event()

    def on_line(stream: str, line: str) -> None:
        if stream == "stdout" and line.strip() == "ready":
            ready.set()

    argv = ["python3", "-c", _CHANNEL, mode, directory, path, str(CHANNEL_TIMEOUT_S)]
    helper = asyncio.ensure_future(
        runner.run(argv, timeout=CHANNEL_TIMEOUT_S + 10, on_line=on_line)
    )
    listening = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait(
            {helper, listening}, timeout=CHANNEL_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if not ready.is_set():
            why = _helper_failure(helper.result()) if helper.done() else "did not start"
            raise DriverError(
                f"{runner.name}: the python3 helper that receives a secret or private file "
                f"{why} (CHAP, and an ietd.conf with passwords, need python3 on that host)"
            )
        reader, writer = await runner.open_unix_stream(f"{directory}/channel")
        try:
            if payload:
                writer.write(payload)
                await writer.drain()
            write_eof = getattr(writer, "write_eof", None)
            if callable(write_eof):
                write_eof()  # the helper reads until end of stream
            reply = await wait_for(reader.read(), CHANNEL_TIMEOUT_S)
        finally:
            writer.close()
        finished = await helper
        if not finished.ok:
            raise DriverError(f"{runner.name}: passing {path} failed: {_helper_failure(finished)}")
        return reply
    finally:
        listening.cancel()
        if not helper.done():
            helper.cancel()
        await asyncio.gather(helper, listening, return_exceptions=True)


def _helper_failure(result: CommandResult) -> str:
    """What went wrong with the helper, without its (long) script."""
    why = result.failure or f"exit status {result.exit_status}"
    stderr = result.stderr.strip()
    return f"failed ({why}): {stderr[-1000:]}" if stderr else f"failed ({why})"


async def read_private_file(runner: HostRunner, path: str) -> str | None:
    """The text of ``path`` on the host (None if it does not exist), never logged."""
    async with _private_dir(runner) as directory:
        reply = await _channel(runner, "get", directory, path, b"")
    head, _, body = reply.partition(b"\n")
    if head == b"missing":
        return None
    if not head.startswith(b"ok ") or int(head[3:]) != len(body):
        raise DriverError(f"{runner.name}: reading {path} was cut short")
    return body.decode("utf-8", "replace")


PUT_FILE = "miglab-put-file"
"""The pseudo-command a dry run shows for :func:`write_private_file`."""

_INSTALL = 'umask 077 && cat "$1" > "$2.miglab-new" && mv -f "$2.miglab-new" "$2"'


async def write_private_file(runner: HostRunner, path: str, text: str) -> None:
    """Replace ``path`` on the host with ``text`` (mode 0600), never logged."""
    data = text.encode()
    async with _private_dir(runner) as directory:
        staged = f"{directory}/data"
        reply = await _channel(runner, "put", directory, staged, data)
        if reply.strip() != b"stored %d" % len(data):
            raise DriverError(f"{runner.name}: writing {path} was cut short")
        result = await runner.run(["sh", "-c", _INSTALL, "miglab-install", staged, path])
        if not result.ok:
            raise CommandFailed(result)


@contextlib.asynccontextmanager
async def secret_file(runner: HostRunner, secret: str) -> AsyncIterator[str]:
    """A file on the host holding ``secret`` (mode 0600), removed when the block ends."""
    async with _private_dir(runner) as directory:
        path = f"{directory}/secret"
        reply = await _channel(runner, "put", directory, path, secret.encode())
        if reply.strip() != b"stored %d" % len(secret.encode()):
            raise DriverError(f"{runner.name}: passing the secret was cut short")
        yield path


# --- commands that need a secret ------------------------------------------------------

# $1 the secret file, $2 a prefix, $3 an environment variable name ("" = append the
# secret as the last argument instead), $4 "1" to drop stdout (tools that echo what
# they were told); the command follows.
_SECRET_SCRIPT = """\
file=$1 prefix=$2 env=$3 quiet=$4
shift 4
secret=$(cat "$file") || exit 125
if [ -n "$env" ]; then export "$env=$secret"; else set -- "$@" "$prefix$secret"; fi
if [ "$quiet" = 1 ]; then exec "$@" >/dev/null; fi
exec "$@"
"""


@dataclass(frozen=True)
class SecretCommand:
    """A command that needs a secret: as the last argument (after ``prefix``) or in ``env``."""

    argv: tuple[str, ...]
    prefix: str = ""
    env: str | None = None
    quiet: bool = False
    """Drop the command's stdout (e.g. targetcli prints "Parameter password is now ...")."""

    def shown(self) -> tuple[str, ...]:
        """The command as a user would type it, the secret as ``***``."""
        if self.env is not None:
            return ("env", f"{self.env}=***", *self.argv)
        return (*self.argv, f"{self.prefix}***")


async def run_with_secret(
    runner: HostRunner, command: SecretCommand, secret: str, *, timeout: float | None = 60.0
) -> CommandResult:
    """Run ``command`` with ``secret`` delivered through a private file on the host."""
    async with secret_file(runner, secret) as path:
        quiet = "1" if command.quiet else "0"
        argv = ["sh", "-c", _SECRET_SCRIPT, "miglab-secret", path, command.prefix]
        argv += [command.env or "", quiet, *command.argv]
        return await runner.run(argv, timeout=timeout)


async def mutate_with_secret(
    planner: Planner, runner: HostRunner, command: SecretCommand, secret: str | None
) -> None:
    """:meth:`Planner.mutate` for a command that needs a secret (shown with ``***``)."""
    planner.commands.append(HostCommand(runner.name, command.shown()))
    if planner.dry_run:
        return
    assert secret is not None, "a real run needs the secret"
    result = await run_with_secret(runner, command, secret)
    if not result.ok:
        raise CommandFailed(result)
