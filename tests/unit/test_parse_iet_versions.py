"""Issue 13, IET: ietadm replies (real, from ietadm 0.4.12 and 1.4.19 built from source)
and /proc/net/iet read without relying on TABs."""

from __future__ import annotations

import pytest

from backend.drivers.parse_iet import (
    IetadmKind,
    classify_ietadm,
    parse_ietadm_accounts,
    parse_ietadm_params,
    parse_ietadm_version,
    parse_proc_session,
    parse_proc_volume,
    read_proc_session,
    read_proc_volume,
)
from tests.conftest import DATA

IET = DATA / "iet"


def capture(name: str) -> tuple[int, str, str]:
    codes = dict(line.split() for line in (IET / "ietadm-exit-codes.txt").read_text().splitlines())
    stem = f"ietadm-{name}"
    return (
        int(codes[stem]),
        (IET / f"{stem}.stdout").read_text(),
        (IET / f"{stem}.stderr").read_text(),
    )


@pytest.mark.parametrize(
    ("name", "exit_code", "errno", "kind", "message"),
    [
        ("1.4.19-show-no-ietd", 145, 111, IetadmKind.NO_DAEMON, "Connection refused."),
        ("1.4.19-show-user-no-ietd", 145, 111, IetadmKind.NO_DAEMON, "Connection refused."),
        (
            "1.4.19-update-unknown-param",
            234,
            22,
            IetadmKind.BAD_REQUEST,
            'Unknown parameter "Bogus".',
        ),
        (
            "1.4.19-new-user-no-password",
            234,
            22,
            IetadmKind.BAD_REQUEST,
            "Username and password must be specified",
        ),
        ("1.4.19-no-op", 234, 22, IetadmKind.BAD_REQUEST, "You must specify the operation type"),
        # 0.4.12: "-1" is connect()'s return, not an errno, and the exit is 255.
        ("0.4.12-show-no-ietd", 255, None, IetadmKind.FAILED, "ietd_request 190 3 -1"),
        ("0.4.12-update-unknown-param", 255, None, IetadmKind.FAILED, "ietd_request 190 2 -1"),
        ("0.4.12-show-user-no-ietd", 234, 22, IetadmKind.BAD_REQUEST, "Unsupported."),
        (
            "0.4.12-new-user-no-password",
            234,
            22,
            IetadmKind.BAD_REQUEST,
            "You need to specify a user and its password (null) u",
        ),
    ],
)
def test_ietadm_error_replies(
    name: str, exit_code: int, errno: int | None, kind: IetadmKind, message: str
) -> None:
    code, stdout, stderr = capture(name)
    assert code == exit_code and stdout == ""
    outcome = classify_ietadm(code, stderr)
    assert (outcome.errno, outcome.kind, outcome.message) == (errno, kind, message)
    assert outcome.unparsed == 0 and not outcome.ok


@pytest.mark.parametrize("version", ["1.4.19", "0.4.12"])
def test_ietadm_version(version: str) -> None:
    code, stdout, stderr = capture(f"{version}-version")
    assert code == 0 and stderr == ""
    assert parse_ietadm_version(stdout) == version
    assert classify_ietadm(code, stderr).ok


def test_ietadm_unknown_stderr_line_is_counted() -> None:
    _, _, stderr = capture("1.4.19-show-no-ietd")
    outcome = classify_ietadm(145, "something new\n" + stderr)
    assert outcome.errno == 111 and outcome.kind is IetadmKind.NO_DAEMON
    assert outcome.unparsed == 1


def test_ietadm_show_params_and_accounts_format() -> None:
    # No real `--op show` reply exists here (it needs ietd and IET's kernel module); the
    # text follows usr/ietadm.c: show_iscsi_param prints "%s=%s" a key, show_account
    # "%sUser %s[ %s]".
    params = parse_ietadm_params("Wthreads=8\nType=0\nQueuedCommands=32\nnot a param\n")
    assert params.get("QueuedCommands") == "32" and params.get("Missing") is None
    assert params.unparsed == 1
    accounts = parse_ietadm_accounts("IncomingUser miglab\nOutgoingUser out secret\n???\n")
    assert [(a.direction, a.user) for a in accounts.accounts] == [
        ("Incoming", "miglab"),
        ("Outgoing", "out"),
    ]
    assert accounts.accounts[1].password == "secret"
    assert "secret" not in repr(accounts)
    assert accounts.unparsed == 1


def test_proc_files_with_tabs_turned_to_spaces_parse_the_same() -> None:
    for name, parse in (
        ("proc-net-iet-volume-public.txt", parse_proc_volume),
        ("proc-net-iet-session-public.txt", parse_proc_session),
    ):
        text = (IET / name).read_text()
        assert "\t" in text
        spaced = text.expandtabs(8)  # what expand(1), and a terminal copy, make of it
        assert parse(spaced) == parse(text)  # type: ignore[operator]
        assert parse(spaced)  # type: ignore[operator]


def test_proc_unknown_lines_are_skipped_and_counted() -> None:
    text = (IET / "proc-net-iet-volume-public.txt").read_text()
    proc = read_proc_volume("garbage line\n" + text + "\tlun:x\n")
    assert proc.unparsed == 2
    assert proc.volumes == tuple(parse_proc_volume(text))
    assert read_proc_session("tid:1 name:x\n  sid:1 initiator:y\n").unparsed == 0
