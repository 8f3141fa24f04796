"""The simulated hosts' small tools say what GNU coreutils, grep, dash and busybox say.

Where the simulator cannot do what the real tool would (run a script of the user's
own), it says so as itself ("miglab sim: ..."), never in a tool's voice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backend.sim.server import _unmatched_quote
from tests.conftest import need
from tests.unit.test_sim_formats import ready_world
from tests.unit.test_sim_xl_messages import execute


@pytest.mark.parametrize(
    ("argv", "code", "stderr"),
    [
        (
            ["date", "-Q"],
            1,
            "date: invalid option -- 'Q'\nTry 'date --help' for more information.\n",
        ),
        (["date", "tomorrow"], 1, "date: invalid date 'tomorrow'\n"),
        (["test", "-Q", "x"], 2, "test: '-Q': unary operator expected\n"),
        (["test", "a", "-foo", "b"], 2, "test: '-foo': binary operator expected\n"),
        (["test", "x", "-lt", "3"], 2, "test: invalid integer 'x'\n"),
        (["[", "-n", "x"], 2, "[: missing ']'\n"),
        (
            ["grep", "-P", "x", "/etc/hostname"],
            2,
            "grep: invalid option -- 'P'\nUsage: grep [OPTION]... PATTERNS [FILE]...\n"
            "Try 'grep --help' for more information.\n",
        ),
        (
            ["grep"],
            2,
            "Usage: grep [OPTION]... PATTERNS [FILE]...\nTry 'grep --help' for more information.\n",
        ),
        (["sh", "/root/nope.sh"], 2, "sh: 0: cannot open /root/nope.sh: No such file\n"),
        (["sh", "-c"], 2, "sh: 0: -c requires an argument\n"),
    ],
)
async def test_refusals_are_the_real_tools_words(argv: list[str], code: int, stderr: str) -> None:
    world = await ready_world()
    got, out = await execute(world, "xenserver1", argv)
    assert (got, out.text("stderr")) == (code, stderr)


async def test_the_guests_busybox_has_sh_only() -> None:
    world = await ready_world()
    code, out = await execute(world, world.guest.name, ["busybox", "vi"])
    assert (code, out.text("stderr")) == (127, "vi: applet not found\n")
    code, out = await execute(world, world.guest.name, ["busybox", "sh", "-c", "echo hi"])
    assert (code, out.text()) == (0, "hi\n")


async def test_date_formats_like_gnu_date_on_the_simulated_clock() -> None:
    world = await ready_world()
    now = world.runtime.wall()
    _, out = await execute(world, "xenserver1", ["date", "+%s"])
    assert out.text() == f"{int(now)}\n"
    _, out = await execute(world, "xenserver1", ["date", "-u", "+%Y-%m-%d %%s %s.%N"])
    day, literal, stamp = out.text().split()
    assert literal == "%s" and stamp.startswith(f"{int(now)}.") and len(stamp.split(".")[1]) == 9
    assert len(day) == 10


async def test_test_answers_what_the_simulated_file_system_holds() -> None:
    world = await ready_world()
    for argv, code in [
        (["test", "-s", "/etc/xen/guest.cfg"], 0),
        (["test", "-x", "/etc/xen/guest.cfg"], 1),
        (["test", "-L", "/etc/xen/guest.cfg"], 1),
        (["test", "3", "-lt", "12"], 0),
        (["test", "12", "-le", "3"], 1),
        (["[", "-d", "/etc/xen", "]"], 0),
    ]:
        got, out = await execute(world, "xenserver1", argv)
        assert (got, out.text("stderr")) == (code, ""), argv


async def test_a_plain_command_runs_and_a_script_is_refused_by_the_simulator() -> None:
    world = await ready_world()
    code, out = await execute(world, "xenserver1", ["sh", "-c", "echo hello", "x"])
    assert (code, out.text()) == (0, "hello\n")
    code, out = await execute(world, "xenserver1", ["sh", "-c", "for i in 1; do :; done", "x"])
    assert code == 126 and out.text("stderr").startswith("miglab sim: the simulated xenserver1 ")
    code, out = await execute(world, "xenserver1", ["grep", "-q", "guest"])
    assert (code, out.text("stderr")) == (1, "")  # no file: stdin, empty here


def test_an_unclosed_quote_is_reported_as_bash_does() -> None:
    assert _unmatched_quote('echo "abc') == (
        "bash: -c: line 1: unexpected EOF while looking for matching `\"'\n"
    )
    assert _unmatched_quote('echo \'a "b"') == (
        "bash: -c: line 1: unexpected EOF while looking for matching `''\n"
    )


def test_targetcli_without_a_command_is_its_shell_on_an_empty_stdin() -> None:
    from backend.sim.tools import targetcli

    code, out, err = targetcli.run(["targetcli"], {})
    assert (code, err) == (0, "")
    assert out == (
        f"targetcli shell version {targetcli.VERSION}\n"
        "Copyright 2011-2013 by Datera, Inc and others.\n"
        "For help on commands, type 'help'.\n\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-c", "x", "127.0.0.1"],
        ["-c", "0", "127.0.0.1"],
        ["-w", "1.5", "127.0.0.1"],
        ["-W", "-1", "127.0.0.1"],
        ["-Z", "127.0.0.1"],
        ["-c"],
    ],
    ids=["no-destination", "count-word", "count-0", "deadline-float", "linger", "option", "arg"],
)
async def test_ping_refuses_bad_options_as_the_real_ping_here_does(args: list[str]) -> None:
    # The real iputils on this machine (20221126, the version the simulated ping plays)
    # is the reference: the same stderr, the same exit code.
    process = await asyncio.create_subprocess_exec(
        "ping",  # argv[0] as a shell passes it: iputils names itself by it
        *args,
        executable=need("ping")["ping"],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    world = await ready_world()
    code, out = await execute(world, "iSCSIserver", ["ping", *args])
    assert (code, out.text("stderr")) == (process.returncode, stderr.decode())


async def test_ping_warns_of_garbage_and_goes_on_as_iputils_does() -> None:
    world = await ready_world()
    code, out = await execute(world, "iSCSIserver", ["ping", "-c", "1", "-i", "0.2x", "127.0.0.1"])
    assert code == 0
    assert out.text("stderr") == (
        "ping: option argument contains garbage: x\n"
        "ping: this will become fatal error in the future\n"
    )
    assert "1 packets transmitted, 1 received" in out.text()


@pytest.mark.parametrize(
    "args",
    [[], ["-t", "x", "1"], ["--zzz", "1"], ["-Q", "1"], ["0"], ["x"]],
    ids=["no-nprocs", "bad-time", "long-option", "short-option", "zero", "word"],
)
async def test_dbench_refuses_as_the_real_dbench_here_does(args: list[str], tmp_path: Path) -> None:
    # dbench 4.0 on this machine is the one the simulated guest's plays. Zero clients
    # end at once, before any file is touched (run in an empty directory all the same).
    process = await asyncio.create_subprocess_exec(
        need("dbench")["dbench"],
        *args,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    world = await ready_world()
    code, out = await execute(world, world.guest.name, ["dbench", *args])
    assert (code, out.text(), out.text("stderr")) == (
        process.returncode,
        stdout.decode(),
        stderr.decode(),
    )


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["foo", "run"],
        ["cpu"],
        ["cpu", "prepare"],
        ["--zzz=1", "cpu", "run"],
        ["cpu", "--threads=x", "run"],
        ["cpu", "--time=x", "run"],
        ["cpu", "--report-interval=x", "run"],
        ["cpu", "--threads=0", "run"],
        ["memory", "--memory-block-size=x", "run"],
        ["memory", "--memory-oper=x", "run"],
        ["cpu", "--cpu-max-prime=x", "run"],
    ],
)
async def test_sysbench_refuses_as_the_real_sysbench_here_does(args: list[str]) -> None:
    # sysbench 1.0.20 on this machine is the one the simulated guest's plays.
    process = await asyncio.create_subprocess_exec(
        need("sysbench")["sysbench"],
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    world = await ready_world()
    code, out = await execute(world, world.guest.name, ["sysbench", *args])
    assert (code, out.text(), out.text("stderr")) == (
        process.returncode,
        stdout.decode(),
        stderr.decode(),
    )


async def test_sysbench_deprecation_warnings_go_where_the_real_ones_go() -> None:
    world = await ready_world()
    argv = ["sysbench", "--test=cpu", "--num-threads=1", "--max-time=1", "run"]
    code, out = await execute(world, world.guest.name, argv)
    assert code == 0
    assert out.text().startswith(
        "WARNING: --max-time is deprecated, use --time instead\n"
        "sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)\n\n"
        "Running the test with following options:\n"
    )
    assert out.text("stderr") == (
        "WARNING: the --test option is deprecated. You can pass a script name or path on "
        "the command line without any options.\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "foo"],
        ["--zzz"],
        ["-x"],
        ["-m"],
        ["-Q"],
        ["-m", "node", "-Q"],
        ["-Q", "-m", "node"],
        ["-m", "session", "-Q"],
        ["-m", "node", "-p"],
        ["-m", "node", "-o", "bogus"],
        ["-m", "session", "-P", "9"],
    ],
)
async def test_iscsiadm_refuses_options_as_the_real_iscsiadm_here_does(args: list[str]) -> None:
    # Refusals of the command line come before iscsiadm talks to iscsid: open-iscsi 2.1.8
    # on this machine says them as the fake must.
    from backend.sim.tools import iscsiadm

    process = await asyncio.create_subprocess_exec(
        "iscsiadm",
        *args,
        executable=need("iscsiadm")["iscsiadm"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    code, out, err = iscsiadm.run(["iscsiadm", *args], {})
    assert (code % 256, out, err) == (process.returncode, stdout.decode(), stderr.decode())


async def test_sysbench_memory_unreadable_total_size_is_no_limit_as_in_the_real_one() -> None:
    # sysbench 1.0.20 reads "x" as 0 MiB, which means no limit: it runs for --time.
    world = await ready_world()
    argv = ["sysbench", "memory", "--memory-total-size=x", "--time=2", "run"]
    code, out = await execute(world, world.guest.name, argv)
    assert (code, out.text("stderr")) == (0, "")
    assert "  total size: 0MiB\n" in out.text()
    assert "total time:                          2.0001s" in out.text()
