"""The SSH transport against a real OpenSSH sshd on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.events import CommandFinished, CommandOutput, CommandStarted, Event, HostState
from backend.transport import SshHost, SshTarget, TransportError
from backend.transport.base import CommandFailed
from tests.integration.conftest import make_sshd
from tests.support.sshd import Sshd
from tests.support.waiting import until


def target(server: Sshd, **overrides: object) -> SshTarget:
    fields: dict[str, object] = {
        "name": "h1",
        "address": server.address,
        "port": server.port,
        "user": server.user,
        "identity": str(server.client_key),
        "known_hosts": str(server.known_hosts),
    }
    fields.update(overrides)
    return SshTarget(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def host(sshd: Sshd) -> AsyncIterator[tuple[SshHost, list[Event]]]:
    events: list[Event] = []
    runner = SshHost(target(sshd), events.append)
    await runner.connect()
    yield runner, events
    await runner.close()


def processes_matching(text: str) -> list[int]:
    """Pids on this machine whose command line contains ``text`` (sshd runs here too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and "pytest" not in cmdline:
            found.append(int(entry.name))
    return found


async def gone(text: str) -> bool:
    """Once no process matches ``text`` (no deadline: a hang is the test's timeout)."""
    await until(lambda: not processes_matching(text), poll_s=0.05)
    return True


async def test_connect_reports_state_and_rtt(host: tuple[SshHost, list[Event]]) -> None:
    runner, events = host
    states = [e.state for e in events if isinstance(e, HostState)]
    assert states[:1] == ["connecting"] and "connected" in states
    assert runner.connected and runner.rtt_ms is not None and runner.rtt_ms > 0


@pytest.mark.parametrize("long_running", [False, True], ids=["pool", "exec"])
async def test_run_separates_streams_and_exit_status(
    host: tuple[SshHost, list[Event]], long_running: bool
) -> None:
    runner, events = host
    result = await runner.run(
        ["sh", "-c", "echo out1; echo err1 >&2; echo 'q\"uote $HOME'; printf tail; exit 7"],
        long_running=long_running,
    )
    assert result.exit_status == 7 and result.failure is None and not result.ok
    assert result.stdout == 'out1\nq"uote $HOME\ntail'
    assert result.stderr == "err1\n"
    mine = [
        e
        for e in events
        if getattr(e, "argv", None) == result.argv
        or (isinstance(e, CommandOutput) and e.host == "h1")
    ]
    started = [e for e in mine if isinstance(e, CommandStarted)][-1]
    finished = [e for e in mine if isinstance(e, CommandFinished)][-1]
    assert started.cmd_id == finished.cmd_id
    assert started.channel == ("exec" if long_running else "pool")
    assert finished.exit_status == 7 and finished.stdout_tail == ["out1", 'q"uote $HOME', "tail"]
    lines = [
        (e.stream, e.line)
        for e in events
        if isinstance(e, CommandOutput) and e.cmd_id == finished.cmd_id
    ]
    assert ("stderr", "err1") in lines and ("stdout", "tail") in lines
    with pytest.raises(CommandFailed, match=r"h1: `sh -c .*` failed \(exit status 7\): err1"):
        result.check()


async def test_arguments_are_quoted_not_interpreted(host: tuple[SshHost, list[Event]]) -> None:
    runner, _ = host
    nasty = "a b; touch /tmp/miglab-injected $(id) `id` 'x' \"y\" \\ * ~"
    result = await runner.run(["printf", "%s", nasty])
    assert result.ok and result.stdout == nasty
    assert not Path("/tmp/miglab-injected").exists()


async def test_missing_program_is_127(host: tuple[SshHost, list[Event]]) -> None:
    runner, _ = host
    result = await runner.run(["miglab-no-such-program"])
    assert result.exit_status == 127 and "not found" in result.stderr


async def test_lines_stream_before_the_command_ends(
    host: tuple[SshHost, list[Event]], tmp_path: Path
) -> None:
    # The command prints its second line only once the test has seen the first: a
    # runner that handed lines over only at the end would never get there (timeout).
    runner, _ = host
    flag = tmp_path / "seen-first"
    seen: list[str] = []

    def on_line(stream: str, line: str) -> None:
        seen.append(line)
        if line == "first":
            flag.touch()

    script = 'echo first; while [ ! -e "$1" ]; do sleep 0.05; done; echo second'
    result = await runner.run(
        ["sh", "-c", script, "sh", str(flag)], on_line=on_line, long_running=True, timeout=60
    )
    assert result.ok, result.failure
    assert seen == ["first", "second"]


@pytest.mark.parametrize("long_running", [False, True], ids=["pool", "exec"])
async def test_timeout_stops_the_remote_process_and_children(
    host: tuple[SshHost, list[Event]], long_running: bool
) -> None:
    runner, _ = host
    tag = f"miglab-timeout-{os.getpid()}-{long_running}"
    # A parent with a child: both must go.
    script = f"sleep 97.{os.getpid()} & wait; : {tag}"
    result = await runner.run(["sh", "-c", script, tag], timeout=0.5, long_running=long_running)
    assert result.failure == "timeout" and result.exit_status is None
    # Stopped at the timeout, not when its sleep of 97 s ended.
    assert 0.5 <= result.duration_s < 97
    assert await gone(tag) and await gone(f"sleep 97.{os.getpid()}")
    after = await runner.run(["echo", "still usable"])
    assert after.ok and after.stdout == "still usable\n"


@pytest.mark.parametrize("long_running", [False, True], ids=["pool", "exec"])
async def test_cancel_stops_the_remote_process(
    host: tuple[SshHost, list[Event]], long_running: bool
) -> None:
    runner, events = host
    tag = f"miglab-cancel-{os.getpid()}-{long_running}"
    task = asyncio.create_task(
        runner.run(["sh", "-c", f"sleep 95; : {tag}"], timeout=None, long_running=long_running)
    )
    await until(lambda: processes_matching(tag) or task.done())
    assert processes_matching(tag), "the command never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(tag)
    finished = [e for e in events if isinstance(e, CommandFinished) and tag in " ".join(e.argv)]
    assert finished and finished[-1].failure == "cancelled"


async def test_concurrent_commands_share_the_connection(
    host: tuple[SshHost, list[Event]], tmp_path: Path
) -> None:
    # Each command says it runs, then waits until all four do: one after another they
    # could never all finish (each would time out), however fast the machine.
    runner, _ = host
    script = 'touch "$1/$2"; while [ "$(ls "$1" | wc -l)" -lt 4 ]; do sleep 0.05; done; echo $2'
    results = await asyncio.gather(
        *(
            runner.run(["sh", "-c", script, "sh", str(tmp_path), str(i)], timeout=60)
            for i in range(4)
        )
    )
    assert [r.failure for r in results] == [None] * 4
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]


async def test_unix_socket_stream_through_the_connection(
    host: tuple[SshHost, list[Event]], tmp_path: Path
) -> None:
    runner, _ = host
    path = str(tmp_path / "echo.sock")

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello " + await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(echo, path)
    async with server:
        reader, writer = await runner.open_unix_stream(path)
        writer.write(b"qmp\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"hello qmp\n"
        writer.close()
    with pytest.raises(TransportError, match="cannot open unix socket"):
        await runner.open_unix_stream(str(tmp_path / "absent.sock"))


async def test_unknown_host_key_is_refused_with_advice(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    events: list[Event] = []
    runner = SshHost(target(sshd, known_hosts=str(empty)), events.append)
    with pytest.raises(TransportError) as caught:
        await runner.connect()
    message = caught.value.message
    assert "not known" in message and "SHA256:" in message
    assert "ssh-keyscan" in message and 'host_key = "accept-new"' in message
    assert isinstance(events[-1], HostState) and events[-1].state == "failed"


async def test_changed_host_key_is_refused_even_with_accept_new(sshd: Sshd, tmp_path: Path) -> None:
    other = make_sshd(tmp_path / "other")  # its key, recorded under our sshd's name
    other.stop()
    wrong = tmp_path / "known_hosts"
    key = other.host_key.with_suffix(".pub").read_text().split()
    wrong.write_text(f"[{sshd.address}]:{sshd.port} {key[0]} {key[1]}\n")
    for policy in ("strict", "accept-new"):
        runner = SshHost(target(sshd, known_hosts=str(wrong), host_key=policy), lambda e: None)
        with pytest.raises(TransportError, match=r"CHANGED.*ssh-keygen -R"):
            await runner.connect()
    assert wrong.read_text().count("\n") == 1  # nothing was added


async def test_accept_new_records_the_key_then_trusts_it(sshd: Sshd, tmp_path: Path) -> None:
    fresh = tmp_path / "sub" / "known_hosts"
    runner = SshHost(target(sshd, known_hosts=str(fresh), host_key="accept-new"), lambda e: None)
    await runner.connect()
    await runner.close()
    recorded = fresh.read_text()
    assert recorded.startswith(f"[{sshd.address}]:{sshd.port} ssh-ed25519 ")
    assert recorded.split()[2] == sshd.host_key.with_suffix(".pub").read_text().split()[1]
    strict = SshHost(target(sshd, known_hosts=str(fresh)), lambda e: None)
    await strict.connect()  # now known: strict accepts it
    assert (await strict.run(["true"])).ok
    await strict.close()


async def test_wrong_identity_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    stranger = make_sshd(tmp_path / "stranger")
    stranger.stop()
    runner = SshHost(target(sshd, identity=str(stranger.client_key)), lambda e: None)
    with pytest.raises(TransportError, match="refused the login"):
        await runner.connect()


async def test_unreachable_port_names_the_address(tmp_path: Path) -> None:
    from tests.support.sshd import free_port

    port = free_port()
    runner = SshHost(SshTarget("nowhere", "127.0.0.1", port, connect_timeout_s=3), lambda e: None)
    with pytest.raises(TransportError, match=f"cannot reach 127.0.0.1:{port}"):
        await runner.connect()


async def test_jump_host_tunnels_the_connection(sshd: Sshd, tmp_path: Path) -> None:
    # The jump host logs each forwarded connection at DEBUG1, which proves the tunnel was used.
    jump = make_sshd(tmp_path / "jump", client_key=sshd.client_key, extra_config="LogLevel DEBUG1")
    try:
        events: list[Event] = []
        via = SshHost(target(jump, name="jump", identity=str(sshd.client_key)), events.append)
        await via.connect()
        inner = SshHost(target(sshd, name="inner"), events.append, via=via)
        await inner.connect()
        result = await inner.run(["echo", "through the jump"])
        assert result.ok and result.stdout == "through the jump\n"
        await inner.close()
        await via.close()
        log = jump.log_path.read_text()
        assert f"target 127.0.0.1 port {sshd.port}" in log
    finally:
        jump.stop()


async def test_ssh_config_alias_is_honoured(
    sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lab.toml may name a host by its ~/.ssh/config alias and leave the rest to that file.
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host labstore\n"
        f"  HostName {sshd.address}\n"
        f"  Port {sshd.port}\n"
        f"  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n"
        f"  UserKnownHostsFile {sshd.known_hosts}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    runner = SshHost(SshTarget("store", "labstore"), lambda e: None)
    await runner.connect()
    try:
        result = await runner.run(["echo", "via ssh_config"])
        assert result.ok and result.stdout == "via ssh_config\n"
    finally:
        await runner.close()


async def test_redacted_values_never_reach_events(host: tuple[SshHost, list[Event]]) -> None:
    runner, events = host
    secret = "s3cr3t-chap-password"
    result = await runner.run(
        ["sh", "-c", 'echo "using $1"; echo "bad $1" >&2', "x", secret], redact=[secret]
    )
    assert result.stdout == f"using {secret}\n"  # the caller still gets the real output
    mine = [e for e in events if getattr(e, "host", None) == "h1"]
    dumped = "".join(e.model_dump_json() for e in mine)
    assert secret not in dumped and "using ***" in dumped and "bad ***" in dumped
    quiet = await runner.run(["echo", "private"], log_output=False)
    finished = [e for e in events if isinstance(e, CommandFinished)][-1]
    assert quiet.stdout == "private\n" and finished.stdout_tail == []
