"""The open-iscsi initiator driver, driven through LocalRunner against the fake iscsiadm.

open-iscsi's kernel side cannot run here, so ``iscsiadm`` (and ``test -b`` for its
disks) on PATH are wrapper scripts running backend.sim.tools.iscsiadm
(tests.support.fake_tools.iscsiadm). The first
tests pin the fake to the real captures in tests/data/iscsiadm, so that the driver
meets the real tool's formats and exit codes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.config import parse_lab
from backend.drivers.base import DriverError, InitiatorSessionInfo
from backend.drivers.factories import initiator_driver
from backend.drivers.initiator import OpenIscsiInitiator
from backend.drivers.parse_iscsiadm import (
    OutcomeKind,
    classify,
    parse_discovery,
    parse_login_output,
    parse_node_list,
    parse_session_list,
    parse_session_tree,
)
from backend.events import CommandFinished, CommandStarted, Event, InitiatorSession
from backend.sim.tools import iscsiadm as fake
from backend.transport import LocalRunner
from backend.transport.base import HostRunner
from tests.conftest import DATA
from tests.support.fake_tools import STATE_ENV, load_state, save_state
from tests.support.tgtd import install_fakes, storage_lab

CAPTURES = DATA / "iscsiadm"
IQN = "iqn.2024-01.lab.storage:disk1"
PORTAL = "198.18.0.1:3260"
BY_PATH = f"/dev/disk/by-path/ip-198.18.0.1:3260-iscsi-{IQN}-lun-1"
SECRET = "Open-Iscsi-Chap-77"
_NOISE = ("System has not been booted with systemd", "Failed to connect to bus")


def capture(name: str) -> str:
    path = CAPTURES / name
    if not path.exists():
        return ""
    # systemd's complaints come from this container, not from iscsiadm.
    return "".join(ln for ln in path.read_text().splitlines(True) if not ln.startswith(_NOISE))


def exit_code(name: str) -> int:
    codes = dict(line.split() for line in (CAPTURES / "exit-codes.txt").read_text().splitlines())
    return int(codes[name])


def run(state: dict[str, Any], *args: str) -> tuple[int, str, str]:
    return fake.run(["iscsiadm", *args], state)


# --- the fake against the real captures --------------------------------------------------


def test_fake_matches_the_captured_records_and_errors() -> None:
    state: dict[str, Any] = {}
    target = ["-T", IQN, "-p", "127.0.0.1:3261"]
    assert run(state, "-m", "session") == (
        exit_code("session-none"),
        "",
        capture("session-none.stderr"),
    )
    assert run(state, "-m", "session", "-P", "3") == (
        exit_code("session-P3-none"),
        "",
        capture("session-P3-none.stderr"),
    )
    assert run(state, "-m", "node") == (exit_code("node-none"), "", capture("node-none.stderr"))
    assert run(state, "-m", "node", "-o", "new", *target) == (
        exit_code("node-new"),
        capture("node-new.stdout"),
        "",
    )
    assert run(state, "-m", "node") == (exit_code("node-one"), capture("node-one.stdout"), "")
    assert parse_node_list(run(state, "-m", "node")[1])[0].portal.tpgt == -1
    assert run(state, "-m", "node", *target, "--logout") == (
        exit_code("node-logout-none"),
        "",
        capture("node-logout-none.stderr"),
    )
    unknown = ["-T", "iqn.2024-01.lab.storage:nope", "-p", "127.0.0.1:3261"]
    assert run(state, "-m", "node", *unknown, "--login") == (
        exit_code("node-login-unknown"),
        "",
        capture("node-login-unknown.stderr"),
    )
    state["iscsiadm"]["iscsid"] = False
    assert run(state, "-m", "node", *target, "--login") == (
        exit_code("node-login-no-iscsid"),
        capture("node-login-no-iscsid.stdout"),
        capture("node-login-no-iscsid.stderr"),
    )
    assert run(state, "-m", "node", "-o", "delete", *target) == (exit_code("node-delete"), "", "")
    assert run(state, "--version") == (0, capture("version.stdout"), "")


def test_fake_usage_errors_match_the_real_iscsiadm() -> None:
    # Seen from iscsiadm 2.1.8 on this machine (see the module docstring).
    state: dict[str, Any] = {}
    try_help = "Try `iscsiadm --help' for more information.\n"
    assert run(state, "--bogus") == (7, "", f"iscsiadm: unrecognized option '--bogus'\n{try_help}")
    assert run(state) == (7, "", try_help)
    assert run(state, "-m", "bogus") == (7, "", "iscsiadm: mode -1 is not yet supported\n")
    assert run(state, "-m", "node", "-o", "bogus") == (
        7,
        "",
        "iscsiadm: can not recognize operation: 'bogus'\n",
    )
    assert run(state, "-m", "discovery", "-t", "st") == (
        7,
        "",
        "iscsiadm: Please specify portal as <ipaddr>[:<ipport>]\n",
    )


def test_fake_login_outputs_parse_with_the_drivers_parsers() -> None:
    state: dict[str, Any] = {}
    fake.offer_target(state, PORTAL, IQN, [(0, False), (1, True)])
    code, out, _ = run(state, "-m", "discovery", "-t", "sendtargets", "-p", PORTAL)
    assert code == 0 and [r.iqn for r in parse_discovery(out)] == [IQN]
    code, out, err = run(state, "-m", "node", "-T", IQN, "-p", PORTAL, "--login")
    assert code == 0 and [e.action for e in parse_login_output(out + err)] == [
        "logging-in",
        "logged-in",
    ]
    [session] = parse_session_list(run(state, "-m", "session")[1])
    assert (session.sid, str(session.portal), session.iqn) == (1, f"{PORTAL},1", IQN)
    [detail] = parse_session_tree(run(state, "-m", "session", "-P", "3")[1])
    assert detail.disk_for_lun(1) == "sdb" and detail.disk_for_lun(0) is None
    assert fake.by_path_links(state) == {BY_PATH: "sdb"}

    code, _, err = run(state, "-m", "node", "-T", IQN, "-p", PORTAL, "--login")
    assert classify(code, err).kind is OutcomeKind.ALREADY_LOGGED_IN
    code, out, _ = run(state, "-m", "node", "-T", IQN, "-p", PORTAL, "--logout")
    assert code == 0 and [e.action for e in parse_login_output(out)] == [
        "logging-out",
        "logged-out",
    ]
    code, _, err = run(state, "-m", "discovery", "-t", "st", "-p", "198.18.0.9")
    assert classify(code, err).kind is OutcomeKind.UNREACHABLE


# --- the driver through LocalRunner ---------------------------------------------------------


@pytest.fixture
def state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = install_fakes(tmp_path / "bin", "iscsiadm", "test")
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    path = tmp_path / "xen1.json"
    state: dict[str, Any] = {}
    fake.offer_target(state, PORTAL, IQN, [(0, False), (1, True)])
    state["iscsiadm"]["udev_delay"] = 3  # the by-path link shows on the 4th look
    save_state(path, state)
    monkeypatch.setenv(STATE_ENV, str(path))
    return path


@pytest.fixture
async def runners() -> AsyncIterator[tuple[dict[str, HostRunner], list[Event]]]:
    events: list[Event] = []
    hosts: dict[str, HostRunner] = {n: LocalRunner(n, events.append) for n in ("xen1", "xen2")}
    yield hosts, events
    for runner in hosts.values():
        await runner.close()


def driver(
    runners: dict[str, HostRunner], events: list[Event], *, chap: bool = False, **kw: float
) -> OpenIscsiInitiator:
    extra = 'chap = { user = "miglab", secret = { env = "MIGLAB_TEST_CHAP" } }\n' if chap else ""
    lab = parse_lab(
        storage_lab(driver="tgt", portal=PORTAL, device="/srv/d.img", extra_storage=extra)
    )
    made = initiator_driver(lab, runners, events.append)
    assert isinstance(made, OpenIscsiInitiator)
    return OpenIscsiInitiator(
        lab.storage, runners, events.append, **{"poll_interval_s": 0.05, **kw}
    )


def node_args() -> list[str]:
    return ["iscsiadm", "-m", "node", "-T", IQN, "-p", PORTAL]


async def test_discover_login_sessions_logout(
    state_file: Path, runners: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    hosts, events = runners
    initiator = driver(hosts, events)
    assert initiator.device == BY_PATH
    assert await initiator.discover("xen1") == [IQN]  # which also made the node record
    assert await initiator.sessions("xen1") == []

    first = await initiator.login("xen1")
    assert first.changed
    assert [list(c.argv) for c in first.commands] == [[*node_args(), "--login"]]
    polls = [e for e in events if isinstance(e, CommandStarted) and e.argv[0] == "test"]
    assert len(polls) == 4 and polls[-1].argv == ["test", "-b", BY_PATH]  # waited for udev
    assert await initiator.sessions("xen1") == [InitiatorSessionInfo("xen1", PORTAL, IQN, BY_PATH)]

    again = await initiator.login("xen1")
    assert not again.changed and again.commands == [] and "already" in again.detail

    out = await initiator.logout("xen1")
    assert out.changed and [list(c.argv) for c in out.commands] == [[*node_args(), "--logout"]]
    assert await initiator.sessions("xen1") == []
    none = await initiator.logout("xen1")
    assert not none.changed and none.commands == []
    assert [(e.state, e.changed) for e in events if isinstance(e, InitiatorSession)] == [
        ("logged-in", True),
        ("logged-in", False),
        ("logged-out", True),
        ("logged-out", False),
    ]


async def test_dry_run_login_changes_nothing(
    state_file: Path, runners: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    hosts, events = runners
    plan = await driver(hosts, events).login("xen1", dry_run=True)
    assert plan.dry_run and [list(c.argv) for c in plan.commands] == [
        [*node_args(), "-o", "new"],
        [*node_args(), "--login"],
    ]
    own = load_state(state_file)["iscsiadm"]
    assert own["nodes"] == [] and own["sessions"] == []
    assert not [e for e in events if isinstance(e, InitiatorSession)]


@pytest.mark.parametrize(
    ("setup", "meaning"),
    [
        ({"portals": {}}, "connection timed out"),  # nothing answers at the portal
        ({"iscsid": False}, "could not connect to iscsid"),
    ],
)
async def test_login_failures_name_host_command_and_stderr(
    state_file: Path,
    runners: tuple[dict[str, HostRunner], list[Event]],
    setup: dict[str, Any],
    meaning: str,
) -> None:
    hosts, events = runners
    state = load_state(state_file)
    state["iscsiadm"].update(setup)
    save_state(state_file, state)
    with pytest.raises(DriverError) as error:
        await driver(hosts, events).login("xen2")
    message = str(error.value)
    assert message.startswith(f"xen2: `{' '.join(node_args())} --login` failed")
    assert meaning in message
    assert [e.state for e in events if isinstance(e, InitiatorSession)] == ["failed"]


async def test_discovery_errors_and_empty_answers(
    state_file: Path, runners: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    hosts, events = runners
    state = load_state(state_file)
    state["iscsiadm"]["portals"][PORTAL][0]["allow"] = ["iqn.2024-01.lab.client:someone-else"]
    save_state(state_file, state)
    assert await driver(hosts, events).discover("xen1") == []  # the target hides from us
    state["iscsiadm"]["portals"] = {}
    save_state(state_file, state)
    with pytest.raises(DriverError, match=r"^xen1: `iscsiadm -m discovery .*Connection refused"):
        await driver(hosts, events).discover("xen1")


async def test_disk_that_never_appears_is_an_error(
    state_file: Path, runners: tuple[dict[str, HostRunner], list[Event]]
) -> None:
    hosts, events = runners
    state = load_state(state_file)
    state["iscsiadm"]["udev_delay"] = 10_000
    save_state(state_file, state)
    initiator = driver(hosts, events, device_timeout_s=0.3, poll_interval_s=0.05)
    with pytest.raises(
        DriverError, match=rf"xen1: logged in .* {BY_PATH} did not appear within 0.3 s"
    ):
        await initiator.login("xen1")


async def test_chap_login_sets_the_record_without_logging_the_secret(
    state_file: Path,
    runners: tuple[dict[str, HostRunner], list[Event]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hosts, events = runners
    state = load_state(state_file)
    fake.offer_target(state, PORTAL, IQN, [(0, False), (1, True)], chap=("miglab", SECRET))
    save_state(state_file, state)
    monkeypatch.setenv("MIGLAB_TEST_CHAP", "Not-The-Secret")
    with pytest.raises(DriverError, match="authorization failure"):
        await driver(hosts, events, chap=True).login("xen1")

    monkeypatch.setenv("MIGLAB_TEST_CHAP", SECRET)
    result = await driver(hosts, events, chap=True).login("xen1")
    update = [*node_args(), "-o", "update", "-n"]
    assert [list(c.argv) for c in result.commands] == [
        [*update, "node.session.auth.authmethod", "-v", "CHAP"],
        [*update, "node.session.auth.username", "-v", "miglab"],
        [*update, "node.session.auth.password", "-v", "***"],
        [*node_args(), "--login"],
    ]
    [node] = load_state(state_file)["iscsiadm"]["nodes"]
    assert node["settings"]["node.session.auth.password"] == SECRET  # it did arrive
    log = "\n".join(json.dumps(e.model_dump(mode="json")) for e in events)
    assert SECRET not in log and "Not-The-Secret" not in log


async def test_unknown_host_is_a_clear_error(
    runners: tuple[dict[str, HostRunner], list[Event]],
) -> None:
    hosts, events = runners
    with pytest.raises(DriverError, match="no runner for host 'xen9'"):
        await driver(hosts, events).sessions("xen9")


async def test_session_that_appears_after_the_check_is_success_unchanged(
    state_file: Path,
    runners: tuple[dict[str, HostRunner], list[Event]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """iscsiadm exit 15 (someone else logged in since we looked) means "as wanted"."""
    hosts, events = runners
    other = driver(hosts, events)
    await other.login("xen1")  # e.g. a second console, or open-iscsi's own startup
    late = driver(hosts, events)

    async def looked_too_early(host: str) -> list[InitiatorSessionInfo]:
        return []

    monkeypatch.setattr(late, "sessions", looked_too_early)
    result = await late.login("xen1")
    assert not result.changed and [list(c.argv) for c in result.commands] == [
        [*node_args(), "--login"]
    ]
    finished = [e for e in events if isinstance(e, CommandFinished) and "--login" in e.argv]
    assert [e.exit_status for e in finished] == [0, 15]
    assert len(load_state(state_file)["iscsiadm"]["sessions"]) == 1
