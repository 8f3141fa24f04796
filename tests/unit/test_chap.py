"""CHAP names and secrets a target tool can carry; secrets never echoed; qemu.binary.

IET takes the account as ``--params=IncomingUser=USER,Password=SECRET``, targetcli
as ``userid=USER`` on a line it splits into words, tgtadm and ietd.conf split on
blanks: a user ``a,Password=x`` rewrote IET's list. lab.toml refuses such a name
where it is written, and the drivers refuse one that reaches them anyway (a Storage
made in code) before they change anything.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.config import Chap, Secret, Storage, load_lab, parse_lab
from backend.drivers.base import DriverError
from backend.drivers.hv_qemu import QemuDriver
from backend.drivers.remote import reveal_chap
from backend.drivers.target_iet import IetDriver
from backend.drivers.target_lio import LioDriver
from backend.drivers.target_tgt import TgtDriver
from backend.events import CommandStarted, Event
from backend.tomlfile import ConfigError
from backend.transport import LocalRunner
from tests.support.fake_tools import load_state
from tests.support.tgtd import storage_lab
from tests.unit.test_target_iet import host  # noqa: F401 - the fake ietadm's fixture
from tests.unit.test_target_lio import state_file  # noqa: F401 - the fake targetcli's

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "/dev/vg0/guest"
ENV_SECRET = "hunter2-the-actual-password"


def lab_with(extra_storage: str = "", driver: str = "iet") -> str:
    return storage_lab(
        driver=driver, portal="198.18.0.1:3260", device=DEVICE, extra_storage=extra_storage
    )


def chap_line(user: str) -> str:
    quoted = "".join(f"\\u{ord(c):04x}" if ord(c) < 32 or c in '"\\' else c for c in user)
    return f'chap = {{ user = "{quoted}", secret = {{ env = "MIGLAB_TEST_CHAP" }} }}\n'


# --------------------------------------------------------------------------- lab.toml


@pytest.mark.parametrize(
    "user",
    [
        "a,Password=x",
        "a b",
        "a\nb",
        "a\tb",
        "a=b",
        "-a",
        "a\x00b",
        "x" * 256,
        "naïve",
    ],
)
def test_unsafe_chap_user_names_are_refused_at_their_key(user: str) -> None:
    text = lab_with(chap_line(user))
    with pytest.raises(ConfigError) as caught:
        parse_lab(text)
    (error,) = caught.value.errors
    assert error.key == "storage.chap.user"
    assert error.line == text.splitlines().index(chap_line(user).rstrip("\n")) + 1
    assert "Password=x" not in str(error)


@pytest.mark.parametrize(
    "user",
    ["miglab", "user@example.com", "iqn.2024-01.org.example:xen1", "a_b-c.d+e/[f]", "x" * 255],
)
def test_rfc_3720_names_load(user: str) -> None:
    lab = parse_lab(lab_with(chap_line(user)))
    assert lab.storage.chap is not None and lab.storage.chap.user == user


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (
            f'chap = {{ user = "miglab", secret = {{ env = "{ENV_SECRET}" }} }}\n',
            "storage.chap.secret.env",
        ),
        (f'chap = {{ user = "miglab", secret = {{ env = "1{ENV_SECRET}" }} }}\n', None),
    ],
)
def test_a_secret_typed_where_the_env_name_belongs_is_not_echoed(
    extra: str, key: str | None
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_lab(lab_with(extra))
    (error,) = caught.value.errors
    assert error.key == (key or "storage.chap.secret.env")
    assert "not a valid environment variable name" in error.message
    assert ENV_SECRET not in str(caught.value) and "hunter2" not in str(caught.value)


def test_an_identity_passphrase_in_the_env_name_is_not_echoed_by_miglab_check(
    tmp_path: Path,
) -> None:
    text = lab_with().replace(
        '[hosts.xen1]\naddress = "local"\n',
        f'[hosts.xen1]\naddress = "local"\nidentity_passphrase = {{ env = "{ENV_SECRET}" }}\n',
    )
    lab = tmp_path / "lab.toml"
    lab.write_text(text)
    for args in (["check", "--lab", str(lab)], ["check", "--lab", str(lab), "--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "tui.cli", *args],
            cwd=tmp_path,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done
        output = done.stdout + done.stderr
        assert "hosts.xen1.identity_passphrase.env" in output
        assert "not a valid environment variable name" in output
        assert "hunter2" not in output and "Traceback" not in output


# --------------------------------------------------------------------------- the drivers


def unsafe_storage(driver: str) -> Storage:
    """A Storage whose CHAP user never went through lab.toml's checks."""
    storage = parse_lab(lab_with(chap_line("miglab"), driver=driver)).storage
    chap = Chap.model_construct(user="a,Password=x", secret=Secret(env="MIGLAB_TEST_CHAP"))
    return storage.model_copy(update={"chap": chap})


def commands(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, CommandStarted)]


@pytest.fixture
async def local() -> AsyncIterator[tuple[LocalRunner, list[Event]]]:
    events: list[Event] = []
    runner = LocalRunner("storage", events.append)
    yield runner, events
    await runner.close()


@pytest.mark.parametrize("dry_run", [True, False])
async def test_iet_refuses_an_unsafe_chap_user_before_changing_anything(
    host: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    local: tuple[LocalRunner, list[Event]],
    monkeypatch: pytest.MonkeyPatch,
    dry_run: bool,
) -> None:
    monkeypatch.setenv("MIGLAB_TEST_CHAP", "Iet-Chap-Secret-3")
    runner, events = local
    iet = IetDriver(
        unsafe_storage("iet"),
        runner,
        events.append,
        conf_path=str(tmp_path / "ietd.conf"),
        proc_dir=str(tmp_path / "proc"),
    )
    with pytest.raises(DriverError, match=r"^storage\.chap\.user: .*not passing it"):
        await iet.export(dry_run=dry_run)
    assert commands(events) == []  # not one command ran
    assert load_state(host).get("iet", {}).get("targets", []) == []
    assert not (tmp_path / "ietd.conf").exists()


async def test_lio_refuses_an_unsafe_chap_user_before_changing_anything(
    state_file: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    local: tuple[LocalRunner, list[Event]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIGLAB_TEST_CHAP", "Lio-Chap-Secret-3")
    runner, events = local
    lio = LioDriver(
        unsafe_storage("lio"), runner, events.append, configfs=str(tmp_path / "configfs")
    )
    before = state_file.read_text()
    with pytest.raises(DriverError, match=r"^storage\.chap\.user: "):
        await lio.export()
    assert commands(events) == []
    assert state_file.read_text() == before


async def test_tgt_refuses_an_unsafe_chap_user_before_running_tgtadm(
    local: tuple[LocalRunner, list[Event]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGLAB_TEST_CHAP", "Tgt-Chap-Secret-3")
    runner, events = local
    tgt = TgtDriver(unsafe_storage("tgt"), runner, events.append)
    with pytest.raises(DriverError, match=r"^storage\.chap\.user: "):
        await tgt.export(dry_run=True)
    assert commands(events) == []


@pytest.mark.parametrize(
    "secret",
    [f"Zq9x{c}Wv7y" for c in (",", " ", "\n", "\x00", "\x1b", "\x7f")],
    ids=["comma", "blank", "newline", "nul", "escape", "del"],
)
def test_a_secret_no_target_tool_can_carry_is_refused_and_not_shown(
    tmp_path: Path, secret: str
) -> None:
    path = tmp_path / "chap-secret"
    path.write_text(secret + "\n")
    storage = parse_lab(
        lab_with('chap = { user = "miglab", secret = { file = "chap-secret" } }\n'),
        base_dir=tmp_path,
    ).storage
    with pytest.raises(DriverError) as caught:
        reveal_chap(storage)
    assert "CHAP secret must not contain" in str(caught.value)
    assert "Zq9x" not in str(caught.value) and "Wv7y" not in str(caught.value)


def test_a_secret_a_tool_can_carry_is_revealed(tmp_path: Path) -> None:
    (tmp_path / "chap-secret").write_text("Good-Secret_42!#\n")
    storage = parse_lab(
        lab_with('chap = { user = "miglab", secret = { file = "chap-secret" } }\n'),
        base_dir=tmp_path,
    ).storage
    assert reveal_chap(storage) == ("miglab", "Good-Secret_42!#")


# --------------------------------------------------------------------------- qemu.binary


def qemu_lab(binary: str) -> str:
    return lab_with(driver="tgt").replace('driver = "xen"', 'driver = "qemu"').replace(
        'config = "/etc/xen/guest.cfg"\n', ""
    ) + (f'\n[guest.qemu]\nkernel = "/var/lib/miglab/vmlinuz"\nbinary = "{binary}"\n')


@pytest.mark.parametrize(
    "binary", ["if", "case", "qemu-system-x86_64", "/opt/qemu 8/bin/qemu-system-x86_64", "./q"]
)
def test_any_plausible_program_is_a_qemu_binary_and_stays_one_argv_word(binary: str) -> None:
    lab = parse_lab(qemu_lab(binary))
    assert lab.guest.qemu is not None and lab.guest.qemu.binary == binary
    driver = QemuDriver(lab, {}, lambda event: None)
    argv = driver.guest_argv("xen1")
    assert argv[0] == binary  # its own word; the transport quotes it (a reserved word too)
    assert argv[1] != binary


@pytest.mark.parametrize(
    ("binary", "needle"),
    [
        ("", "must not be empty"),
        ("qemu\\nrm -rf /", "control characters"),
        ("-qemu", "starts with '-'"),
        ("/usr/bin/", "a directory"),
    ],
)
def test_a_qemu_binary_no_exec_could_run_is_refused(binary: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_lab(qemu_lab(binary))
    (error,) = caught.value.errors
    assert error.key == "guest.qemu.binary" and needle in error.message


def test_the_lab_file_loader_reports_the_chap_user_line(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    text = lab_with(chap_line("a,Password=x"))
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_lab(path)
    line = text.splitlines().index(chap_line("a,Password=x").rstrip("\n")) + 1
    assert str(caught.value).startswith(f"{path}:{line}: storage.chap.user: ")
