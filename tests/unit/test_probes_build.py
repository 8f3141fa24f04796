"""The kernel-compile probe: the wrapper, the parser on real make captures, a real build."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from pathlib import Path

import pytest

from backend.events import Sample
from backend.probes import PROBES, is_summary, parse_lines
from backend.probes.build import (
    BUILD_SCRIPT,
    BuildParser,
    build_command,
    is_compile_line,
    make_argv,
)
from tests.conftest import DATA, need

CAPTURES = DATA / "probes"
PROJECT = CAPTURES / "buildproj"


def parse(name: str, step: float = 0.25, period_s: float = 1.0) -> list[Sample]:
    ticks = itertools.count(0.0, step)
    parser = BuildParser("guest", clock=lambda: next(ticks), period_s=period_s)
    return parse_lines(parser, (CAPTURES / name).read_text().splitlines(keepends=True))


# -- builders ----------------------------------------------------------------------


def test_make_argv() -> None:
    assert make_argv(2) == ["make", "-j2"]
    assert make_argv(4, targets=["bzImage", "modules"], variables=["V=1"]) == [
        "make", "-j4", "V=1", "bzImage", "modules",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        make_argv(0)
    with pytest.raises(ValueError):
        make_argv(2, targets=["-k"])


def test_build_command_passes_arguments_positionally() -> None:
    argv = build_command(["make", "-j2"], directory="/usr/src/linux")
    assert argv == ["sh", "-c", BUILD_SCRIPT, "miglab-build", "/usr/src/linux", "make", "-j2"]
    assert build_command(["make"])[4] == ""  # no directory: stay where the shell starts
    with pytest.raises(ValueError):
        build_command([])
    with pytest.raises(ValueError):
        build_command(["make"], directory="")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # kbuild's quiet lines (scripts/Makefile.build, scripts/Kbuild.include)
        ("  CC      kernel/fork.o", True),
        ("  CC [M]  drivers/net/virtio_net.o", True),
        ("  HOSTCC  scripts/basic/fixdep", True),
        ("  HOSTCXX scripts/gcc-plugins/stackleak_plugin.so", True),
        ("  AS      arch/x86/entry/entry_64.o", True),
        ("  LD      vmlinux.o", False),
        ("  AR      lib/lib.a", False),
        ("  GEN     Makefile", False),
        ("  CALL    scripts/checksyscalls.sh", False),
        ("  Kernel: arch/x86/boot/bzImage is ready  (#1)", False),
        # compiler command lines, as make echoes them or kbuild with V=1
        ("cc -O2 -Wall -c -o out/main.o src/main.c", True),
        ("  gcc -Wp,-MMD,kernel/.fork.o.d -nostdinc -O2 -c -o kernel/fork.o kernel/fork.c", True),
        ("x86_64-linux-gnu-gcc-12 -c -o a.o a.c", True),
        ("/usr/bin/clang -c a.c", True),
        ("ccache gcc -O2 -c a.c", True),
        ("cc -o out/miglab-demo out/main.o out/unit01.o", False),
        ("make[1]: Entering directory '/usr/src/linux'", False),
        ("src/main.c:31:23: error: invalid digit", False),
    ],
)
def test_compile_lines(line: str, expected: bool) -> None:
    assert is_compile_line(line) is expected


# -- captures ----------------------------------------------------------------------


def test_kbuild_style_quiet_output() -> None:
    # The clock (0.25 s a reading) is read by the start marker (0.0), each CC
    # line (0.25 .. 4.0) and the exit marker (4.25), not by the LD line.
    samples = parse("build-make-j2-kbuild-quiet.txt")
    progress = [s for s in samples if not is_summary(s)]
    assert [s.values["files"] for s in progress] == [4, 8, 12, 16]
    assert [s.t for s in progress] == [1.0, 2.0, 3.0, 4.0]
    assert progress[0].values == {"files": 4, "elapsed_s": 1.0, "files_per_s": 4.0}
    assert progress[0].unit == {"elapsed_s": "s", "files_per_s": "files/s"}
    summary = samples[-1]
    assert summary.values == {
        "summary": 1.0,
        "exit_status": 0,
        "files": 16,  # main.c and unit01..15.c; the LD line is not a compile
        "elapsed_s": 4.25,
        "files_per_s": 16 / 4.25,
        "errors": 0,
    }


def test_verbose_compiler_lines() -> None:
    samples = parse("build-make-j2-V1.txt", step=1.0, period_s=5.0)
    assert [s.values["files"] for s in samples if not is_summary(s)] == [5, 10, 15, 16]
    assert samples[-1].values["files"] == 16
    assert samples[-1].values["exit_status"] == 0


def test_failing_build() -> None:
    samples = parse("build-make-j2-fails.txt")
    summary = samples[-1]
    assert summary.values["exit_status"] == 2  # make's status, through the wrapper
    assert summary.values["files"] == 2
    # Two "fatal error:" lines and two "make: *** [...] Error 1" (not "Waiting ...").
    assert summary.values["errors"] == 4


def test_stream_cut_before_exit_marker() -> None:
    parser = BuildParser("guest", clock=lambda: 7.0)
    assert parser.feed("miglab-build start") == []
    assert parser.feed("  CC      kernel/fork.o") == []
    [progress, summary] = parser.finish()
    assert progress.values["files"] == 1
    assert summary.values["exit_status"] is None
    assert parser.finish() == []
    assert parser.feed("  CC      kernel/exit.o") == []


def test_registry_entry() -> None:
    parser = PROBES["build"].new_parser("guest", lambda: 3.0)
    [summary] = parser.feed("miglab-build exit=0")
    assert (summary.probe, summary.values["exit_status"]) == ("build", 0)


# -- real runs ---------------------------------------------------------------------


async def run_parsed(argv: list[str], parser: BuildParser) -> tuple[int, list[Sample]]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    samples: list[Sample] = []
    async for raw in process.stdout:
        samples += parser.feed(raw.decode())
    samples += parser.finish()
    return await process.wait(), samples


async def test_real_make_j2(tmp_path: Path) -> None:
    need("sh", "make", "cc")
    tree = tmp_path / "tree"
    shutil.copytree(PROJECT, tree)
    argv = build_command(make_argv(2), directory=str(tree))
    status, samples = await run_parsed(argv, BuildParser("local"))  # as long as it takes
    assert status == 0
    summary = samples[-1]
    assert summary.values["exit_status"] == 0
    assert summary.values["files"] == 16
    assert (tree / "out" / "miglab-demo").exists()


async def test_real_wrapper_reports_failure_and_keeps_stderr(tmp_path: Path) -> None:
    need("sh", "make", "cc")
    tree = tmp_path / "tree"
    shutil.copytree(PROJECT, tree)
    broken = make_argv(2, variables=["CFLAGS=-include miglab-missing.h"])
    argv = build_command(broken, directory=str(tree))
    status, samples = await run_parsed(argv, BuildParser("local"))  # as long as it takes
    assert status == 2
    assert samples[-1].values["exit_status"] == 2
    assert (samples[-1].values["errors"] or 0) >= 2  # compiler stderr came through stdout


async def test_real_wrapper_missing_directory(tmp_path: Path) -> None:
    need("sh")
    argv = build_command(["make"], directory=str(tmp_path / "absent"))
    status, samples = await asyncio.wait_for(run_parsed(argv, BuildParser("local")), 10)
    assert status == 2
    assert samples[-1].values["exit_status"] is None  # it never started
