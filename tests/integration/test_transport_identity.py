"""Local files and argv that used to be misreported, against a real sshd.

* an identity protected by a passphrase, as a default ``ssh-keygen`` makes it (the
  OpenSSH format with a bcrypt KDF), its passphrase given the lab's way ({env}/{file});
* an identity or known_hosts that is not a regular file is refused saying what it is;
* a program name that is a shell reserved word or an assignment is just a name.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backend.config import parse_lab
from backend.events import Event
from backend.transport import SshHost, SshTarget, TransportError
from backend.transport.hosts import ssh_target
from tests.integration.conftest import make_sshd
from tests.support.sshd import Sshd

PASSPHRASE = "Quokka-passphrase-9131"
ENV = "MIGLAB_TEST_IDENTITY_PASSPHRASE"


def lab_text(server: Sshd, key: Path, extra: str) -> str:
    return f"""\
[lab]
name = "t"
link_mbit = 100

[hosts.a]
address = "{server.address}"
port = {server.port}
user = "{server.user}"
identity = "{key}"
known_hosts = "{server.known_hosts}"
{extra}

[hosts.b]
address = "10.0.0.2"

[storage]
host = "a"
driver = "tgt"
iqn = "iqn.2024-01.org.example:disk"
device = "/dev/vdb"
portal = "10.0.0.1"

[hypervisor]
driver = "qemu"
hosts = ["a", "b"]

[guest]
name = "g"
address = "10.0.0.50"
vcpus = 1
memory_mb = 256

[guest.qemu]
kernel = "/var/lib/miglab/vmlinuz"
"""


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sshd, Path]:
    """An sshd that accepts a key made by a default ssh-keygen with a passphrase."""
    directory = tmp_path_factory.mktemp("protected")
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-N", PASSPHRASE, "-f", str(key)], check=True)
    assert b"ENCRYPTED" in key.read_bytes() or b"OPENSSH" in key.read_bytes()
    server = make_sshd(directory / "sshd", client_key=key)
    yield server, key  # type: ignore[misc]
    server.stop()


async def connect(target: SshTarget) -> tuple[SshHost, list[Event]]:
    events: list[Event] = []
    host = SshHost(target, events.append)
    await host.connect()
    return host, events


@pytest.mark.parametrize("source", ["env", "file"])
async def test_a_passphrase_protected_key_connects(
    protected: tuple[Sshd, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    server, key = protected
    if source == "env":
        monkeypatch.setenv(ENV, PASSPHRASE)
        secret = f'identity_passphrase = {{ env = "{ENV}" }}'
    else:
        (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
        secret = 'identity_passphrase = { file = "passphrase" }'
    lab = parse_lab(lab_text(server, key, secret), base_dir=tmp_path)
    host, events = await connect(ssh_target(lab.host("a")))
    try:
        result = await host.run(["echo", "in"])
        assert result.ok and result.stdout == "in\n"
    finally:
        await host.close()
    assert not any(PASSPHRASE in repr(event) for event in events)


async def test_a_wrong_passphrase_is_refused_clearly(protected: tuple[Sshd, Path]) -> None:
    server, key = protected
    target = SshTarget(
        "a",
        server.address,
        server.port,
        server.user,
        str(key),
        passphrase=lambda: "Wrong-" + PASSPHRASE,
        known_hosts=str(server.known_hosts),
    )
    with pytest.raises(TransportError, match=rf"cannot decrypt identity {key}") as info:
        await connect(target)
    assert PASSPHRASE not in str(info.value)


async def test_a_missing_passphrase_says_how_to_give_it(protected: tuple[Sshd, Path]) -> None:
    server, key = protected
    target = SshTarget(
        "a", server.address, server.port, server.user, str(key), known_hosts=str(server.known_hosts)
    )
    with pytest.raises(TransportError, match="protected by a passphrase; give it as identity_pass"):
        await connect(target)


@pytest.mark.parametrize(
    ("identity", "what"),
    [("dir", "is a directory, not a file"), ("/dev/zero", "is a character device, not a file")],
)
async def test_an_identity_that_is_not_a_file_says_what_it_is(
    sshd: Sshd, tmp_path: Path, identity: str, what: str
) -> None:
    path = tmp_path if identity == "dir" else Path(identity)
    target = SshTarget(
        "a", sshd.address, sshd.port, sshd.user, str(path), known_hosts=str(sshd.known_hosts)
    )
    with pytest.raises(TransportError, match=f"identity {path} {what}"):
        await connect(target)


async def test_a_missing_identity_does_not_exist(sshd: Sshd, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    target = SshTarget("a", sshd.address, sshd.port, sshd.user, str(missing))
    with pytest.raises(TransportError, match=f"identity file {missing} does not exist"):
        await connect(target)


@pytest.mark.parametrize("known", ["dir", "/dev/zero"])
async def test_a_known_hosts_that_is_not_a_file_is_refused(
    sshd: Sshd, tmp_path: Path, known: str
) -> None:
    path = tmp_path if known == "dir" else Path(known)
    target = SshTarget(
        "a", sshd.address, sshd.port, sshd.user, str(sshd.client_key), known_hosts=str(path)
    )
    with pytest.raises(TransportError, match=f"known_hosts {path} is a (directory|character dev)"):
        await connect(target)


@pytest.mark.parametrize("long_running", [False, True], ids=["pool", "exec"])
async def test_a_reserved_word_or_assignment_as_program_is_just_a_name(
    sshd: Sshd, long_running: bool
) -> None:
    target = SshTarget(
        "a",
        sshd.address,
        sshd.port,
        sshd.user,
        str(sshd.client_key),
        known_hosts=str(sshd.known_hosts),
    )
    host, _ = await connect(target)
    try:
        for argv in (["if"], ["case", "x"], ["A=b", "true"], ["!", "false"]):
            result = await host.run(argv, timeout=30, long_running=long_running)
            assert result.failure is None and result.exit_status == 127, (argv, result)
            assert "not found" in result.stderr
        after = await host.run(["echo", "same connection"])
        assert after.ok and after.stdout == "same connection\n"
    finally:
        await host.close()
