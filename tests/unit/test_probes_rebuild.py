"""The kernel-compile probe's repeated build: a tree cleaned and built until stopped, each
build timed by the guest's uptime stamps (study test 6 reported compile times)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
from pathlib import Path

import pytest

from backend.events import Sample
from backend.experiments.scenarios import parse_scenario
from backend.probes import is_summary, parse_lines
from backend.probes.build import (
    BUILD_SCRIPT,
    REBUILD_SCRIPT,
    BuildOptions,
    BuildParser,
    build_command,
    is_compile_line,
    make_argv,
)
from backend.tomlfile import ConfigError
from tests.conftest import DATA, need

CAPTURES = DATA / "probes"
PROJECT = CAPTURES / "buildproj"
# Two builds of Lua 5.2 with tcc and make -j2 in the sandbox guest (2 vCPUs, QEMU TCG),
# through REBUILD_SCRIPT; the stream stops after the second build, as a stopped run's does.
GUEST_CAPTURE = "build-lua-tcc-rebuild.txt"


def parser(step: float = 0.25) -> BuildParser:
    ticks = itertools.count(0.0, step)
    return BuildParser("guest", clock=lambda: next(ticks))


def builds(samples: list[Sample]) -> list[dict[str, float | None]]:
    return [s.values for s in samples if "build_s" in s.values]


def test_repeat_runs_the_rebuild_script_with_the_same_arguments() -> None:
    argv = build_command(["make", "-j2"], directory="/mnt/disk/build/lua-5.2", repeat=True)
    assert argv == [
        "sh", "-c", REBUILD_SCRIPT, "miglab-rebuild", "/mnt/disk/build/lua-5.2", "make", "-j2",
    ]  # fmt: skip
    assert build_command(["make"])[2] == BUILD_SCRIPT  # once, as before
    assert '"$@" clean > /dev/null' in REBUILD_SCRIPT  # a full build every time


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("tcc -O2 -Wall -DLUA_COMPAT_ALL -DLUA_USE_POSIX    -c -o lapi.o lapi.c", True),
        ("tcc -ar rcs liblua.a lapi.o lcode.o", False),  # archiving, not compiling
        ("tcc -o lua   lua.o liblua.a -lm  ", False),  # linking
        ("true liblua.a", False),
    ],
)
def test_tcc_lines(line: str, expected: bool) -> None:
    assert is_compile_line(line) is expected


def test_guest_capture_gives_each_builds_duration_from_the_guest() -> None:
    lines = (CAPTURES / GUEST_CAPTURE).read_text().splitlines()
    samples = parse_lines(parser(), lines)
    assert builds(samples) == [
        {"round": 1, "build_s": pytest.approx(9.07 - 3.61), "round_exit_status": 0,
         "round_files": 34},
        {"round": 2, "build_s": pytest.approx(15.43 - 9.38), "round_exit_status": 0,
         "round_files": 34},
    ]  # fmt: skip
    assert all(s.unit == {"build_s": "s"} for s in samples if "build_s" in s.values)
    summary = samples[-1].values
    assert is_summary(samples[-1])
    # Stopped mid-loop: no exit marker, so no exit status; two builds finished.
    assert summary["exit_status"] is None and summary["builds"] == 2
    assert summary["files"] == 68 and summary["errors"] == 0
    progress = [s for s in samples if "files_per_s" in s.values and not is_summary(s)]
    assert progress and all(s.values["files"] for s in progress)


def test_a_build_without_uptime_stamps_is_timed_by_the_clock() -> None:
    p = parser(step=0.5)
    p.feed("miglab-build start")  # t=0
    assert p.feed("miglab-build round=1 start uptime=") == []  # t=0.5
    p.feed("cc -c a.c")  # t=1.0
    [done] = p.feed("miglab-build round=1 exit=0 uptime=")  # t=1.5
    assert done.values["build_s"] == 1.0 and done.values["round_files"] == 1


def test_an_end_without_its_start_gives_no_duration_and_a_failed_build_no_count() -> None:
    p = parser()
    p.feed("miglab-build start")
    assert p.feed("miglab-build round=3 exit=0 uptime=9.00") == []  # its start was cut
    p.feed("miglab-build round=4 start uptime=10.00")
    [failed] = p.feed("miglab-build round=4 exit=2 uptime=12.50")
    assert failed.values["round_exit_status"] == 2 and failed.values["build_s"] == 2.5
    [summary] = p.feed("miglab-build exit=2")
    assert summary.values["exit_status"] == 2 and summary.values["builds"] == 0


def test_a_build_run_once_has_no_build_count() -> None:
    samples = parse_lines(parser(), ["miglab-build start", "cc -c a.c", "miglab-build exit=0"])
    assert "builds" not in samples[-1].values and builds(samples) == []


# -- the scenario option -----------------------------------------------------------

BUILD_SCENARIO = """\
id = "b"
title = "b"
migrations = 0
[timeline]
baseline_s = 5
[[workloads]]
kind = "build"
options = OPTIONS
"""


def test_repeat_options() -> None:
    options = BuildOptions(directory=["/usr/src/linux", "/srv/tree"], repeat=True)
    assert options.directories == ["/usr/src/linux", "/srv/tree"]
    assert options.argv()[3:5] == ["miglab-rebuild", "/usr/src/linux"]  # the first
    assert options.argv("/srv/tree")[4] == "/srv/tree"
    assert BuildOptions().directories == [] and BuildOptions(directory="/a").directories == ["/a"]
    for bad, needle in [
        ('{ repeat = true, targets = ["bzImage"] }', "give no targets"),
        ("{ directory = [] }", "at least one tree"),
        ('{ directory = ["/a", ""] }', "must not be empty"),
        ("{ stand_in = true }", "stand_in"),  # gone: the guest builds real code or nothing
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_scenario(BUILD_SCENARIO.replace("OPTIONS", bad), "b.toml")
        assert needle in str(caught.value), (bad, str(caught.value))


# -- a real repeated build on this machine ------------------------------------------


async def test_real_rebuild_times_each_build_and_stops_when_one_fails(tmp_path: Path) -> None:
    need("sh", "make", "cc", "cut")
    tree = tmp_path / "tree"
    shutil.copytree(PROJECT, tree)
    argv = build_command(make_argv(2), directory=str(tree), repeat=True)
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    p = BuildParser("local")
    timed: list[Sample] = []
    try:
        async with asyncio.timeout(60):
            while len(timed) < 2:  # until two builds have finished
                timed += [s for s in p.feed((await process.stdout.readline()).decode())
                          if "build_s" in s.values]  # fmt: skip
                # The tree was built: break it, so the next build fails and the loop ends.
                if timed and not (tree / "src" / "zz_broken.c").exists():
                    (tree / "src" / "zz_broken.c").write_text("int broken(void) { return }\n")
            rest = [line.decode() async for line in process.stdout]
    except BaseException:
        # Only when it failed: kill() polls (reaps) a child that has just exited, and
        # asyncio's watcher then reports exit status 255 for it (seen under load).
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
    samples = [s for line in rest for s in p.feed(line)] + p.finish()
    assert await process.wait() == 2
    first, second = (s.values for s in timed)
    assert first["round_exit_status"] == 0 and first["round_files"] == 16
    assert first["build_s"] is not None and first["build_s"] >= 0
    assert second["round_exit_status"] == 2 and second["round"] == 2
    summary = samples[-1].values
    assert summary["exit_status"] == 2 and summary["builds"] == 1
    assert (summary["errors"] or 0) >= 1
