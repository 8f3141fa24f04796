"""The study's test 6 on the sandbox: `miglab run migrate-kernel-compile --quick` compiles
real code in the guest while it migrates (Lua 5.2 with tcc and make -j2, in the tree the
guest's init put on the shared iSCSI disk), and the log times each build."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.events import CommandFinished, CommandStarted, Sample
from backend.sandbox.lab_guest import BUILD_TREE
from backend.session import read_session
from tests.e2e.conftest import SandboxUnderTest
from tests.e2e.test_lab_on_sandbox import destroy_guest
from tests.e2e.test_runner_on_sandbox import run_cli

pytestmark = [pytest.mark.system, pytest.mark.timeout(420)]

LUA_C_FILES = 34


@pytest.fixture(scope="module", autouse=True)
def no_guest_after_the_module(sandbox: SandboxUnderTest) -> Iterator[None]:
    yield
    asyncio.run(destroy_guest(sandbox))


def test_migrate_kernel_compile_builds_real_code_in_the_guest_and_times_each_build(
    sandbox: SandboxUnderTest, tmp_path: Path
) -> None:
    log = tmp_path / "migrate-kernel-compile.jsonl"
    data = run_cli(sandbox, "migrate-kernel-compile", log)
    [migration] = data["migrations"]
    assert migration["total_s"] is not None and migration["total_s"] > 0
    assert data["probes"]["build.files_per_s"]["baseline"] > 0

    session = read_session(log)
    assert session.bad_lines == []
    started = [e for e in session.events if isinstance(e, CommandStarted) and "make" in e.argv[5:6]]
    # The scenario's first tree (/usr/src/linux) is not in the sandbox guest: its own is.
    [build] = started
    assert build.host == sandbox.lab.guest.name
    assert build.argv[3:] == ["miglab-rebuild", BUILD_TREE, "make", "-j2"], build.argv
    looked = [e for e in session.events if isinstance(e, CommandFinished)]
    answers = {e.argv[4]: e.stdout_tail for e in looked if e.argv[3:4] == ["miglab-isdir"]}
    assert answers == {"/usr/src/linux": ["no"], BUILD_TREE: ["yes"]}, answers

    timed = [
        e.values
        for e in session.events
        if isinstance(e, Sample) and e.probe == "build" and "build_s" in e.values
    ]
    print(f"\nbuilds of Lua 5.2 in the guest: {[v['build_s'] for v in timed]} s")
    assert timed, "no build finished during the run"
    for values in timed:
        assert values["round_exit_status"] == 0, values  # tcc built it, make said so
        assert values["round_files"] == LUA_C_FILES, values  # every C file compiled
        took = values["build_s"]
        assert took is not None and 0 < took < 300, values
    # Stopped by the runner mid-loop: no exit status, every finished build counted.
    [summary] = [
        e.values for e in session.events if isinstance(e, Sample) and e.probe == "build"
        and e.values.get("summary") == 1.0
    ]  # fmt: skip
    assert summary["builds"] == len(timed) and summary["errors"] == 0, summary
