"""`miglab import auto`: the tool and its format told from the text of real captures; a file
no tool or several tools wrote is refused (exit 2, naming the file), never guessed."""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

from backend.import_detect import (
    TAIL_LINES,
    DetectError,
    describe,
    detect,
    read_head,
)
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]


def miglab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, cwd=ROOT
    )


def _captures(folder: str, *patterns: str) -> list[Path]:
    found = sorted({p for pattern in patterns for p in (DATA / folder).glob(pattern)})
    assert found, (folder, patterns)  # the corpus is there: the test cannot pass empty
    return [p for p in found if not p.name.endswith(".stderr.txt")]


# Every real capture of a tool `miglab import` reads, and the kind it must be told as.
OF_KIND = {
    "ping": _captures("probes", "ping-*.txt"),
    "sysbench": _captures("probes", "sysbench-*.txt"),
    "dbench": _captures("probes", "dbench-*.txt"),
    "build": _captures("probes", "build-*.txt"),
    "dirtier": _captures("probes", "dirtier-*.txt"),
    "xl": _captures("xl", "xl-migrate-*.txt"),
    "qemu": _captures("qmp", "*.jsonl", "*.json", "hmp-*.txt"),
}
CASES = [(kind, path) for kind, paths in OF_KIND.items() for path in paths]

# Captures of tools import does not read: told as none, not as the nearest one.
NOT_IMPORTABLE = [
    *_captures("iscsiadm", "*.stdout"),
    *_captures("tgt", "show-*.stdout"),
    *_captures("lio", "*.txt"),
    *_captures("iet", "*.stderr", "proc-net-*.txt"),
    *_captures("xl", "xl-list-*", "xl-info-*"),
]


def _read(path: Path) -> tuple[list[str], deque[str]]:
    lines = iter(path.read_text(encoding="utf-8", errors="replace").splitlines())
    head = read_head(lines)
    return head.lines, deque(lines, TAIL_LINES)


@pytest.mark.parametrize(("kind", "path"), CASES, ids=[p.name for _, p in CASES])
def test_every_real_capture_is_told_as_its_tool(kind: str, path: Path) -> None:
    head, tail = _read(path)
    assert detect(head) == kind
    assert describe(kind, head, tail).lower().startswith(kind.replace("qemu", "qemu ("))


@pytest.mark.parametrize("path", NOT_IMPORTABLE, ids=[p.name for p in NOT_IMPORTABLE])
def test_output_of_tools_import_does_not_read_is_not_guessed(path: Path) -> None:
    head, _ = _read(path)
    with pytest.raises(DetectError, match="none of its"):
        detect(head)


@pytest.mark.parametrize(
    ("capture", "found"),
    [
        ("probes/ping-busybox-netns-blackhole-c25-i0.2.txt", "ping (BusyBox: no timestamps)"),
        ("probes/ping-loopback-noD-c20-i0.2.txt", "ping (iputils; without -D: no timestamps)"),
        ("probes/ping-loopback-D-noO-c20-i0.2.txt", "ping (iputils; -D timestamps)"),
        ("probes/ping-netns-blackhole-c25-i0.2.txt", "ping (iputils; -D timestamps, -O)"),
        # only ICMP errors, no reply: the -D stamps on them still say -D
        ("probes/ping-netns-unreachable-D-noO-c5-i0.5.txt", "ping (iputils; -D timestamps)"),
        (
            "probes/ping-old-iputils-icmp_req-moler.txt",
            "ping (iputils of about 2010-2012, icmp_req=; without -D: no timestamps)",
        ),
        ("probes/sysbench-cpu-v0.4.12-t2.txt", "sysbench cpu (sysbench 0.4.12)"),
        (
            "probes/sysbench-memory-v0.4-2017-write-1G-t2.txt",
            "sysbench memory (sysbench 0.4.12, the 0.4 branch's later wording)",
        ),
        ("probes/sysbench-memory-v0.5-write-1G-t2.txt", "sysbench memory (sysbench 0.5)"),
        ("probes/sysbench-cpu-t2-time5-report1.txt", "sysbench cpu (sysbench 1.0.20)"),
        ("probes/sysbench-cpu-v1.1.0-t2-time3-report1.txt", "sysbench cpu (sysbench 1.1.0)"),
        ("probes/dbench-s-S-t5-c2.txt", "dbench (dbench 4.00, sync open, sync dirs)"),
        ("probes/dbench-t10-c2.txt", "dbench (dbench 4.00)"),
        ("xl/xl-migrate-v1-4.4-verbose.txt", "xl migrate (migration stream v1)"),
        ("xl/xl-migrate-v2-4.17-verbose.txt", "xl migrate (migration stream v2)"),
        ("qmp/source.jsonl", "QEMU (QMP JSON, miglab's QMP capture)"),
        ("qmp/lp1585533-query-migrate-nan-qemu2.3.json", "QEMU (QMP JSON)"),
        (
            "qmp/hmp-info-migrate-qemu7.2-cancelled-failed.txt",
            "QEMU (HMP info migrate, QEMU 0.12-10.0 layout)",
        ),
        ("probes/build-make-j2-kbuild-quiet.txt", "build (miglab's build wrapper; kbuild quiet"),
    ],
)
def test_the_format_is_what_the_text_shows(capture: str, found: str) -> None:
    head, tail = _read(DATA / capture)
    assert describe(detect(head), head, tail).startswith(found)


def test_import_auto_says_what_it_detected_and_imports_it(tmp_path: Path) -> None:
    capture = DATA / "probes" / "ping-busybox-netns-blackhole-c25-i0.2.txt"
    log = tmp_path / "auto.jsonl"
    result = miglab("import", "auto", str(capture), "-o", str(log), "--start", "1000")
    assert result.returncode == 0, result.stderr
    assert f"{capture}: detected: ping (BusyBox: no timestamps)" in result.stdout
    assert f"{log}: 26 events from {capture} (ping)" in result.stdout


def test_an_explicit_kind_says_which_format_of_it_was_found(tmp_path: Path) -> None:
    capture = DATA / "probes" / "sysbench-memory-v0.5-write-1G-t2.txt"
    result = miglab("import", "sysbench", str(capture), "-o", str(tmp_path / "s.jsonl"))
    assert result.returncode == 0, result.stderr
    assert f"{capture}: format: sysbench memory (sysbench 0.5)" in result.stdout


def test_import_auto_refuses_what_no_tool_it_reads_wrote(tmp_path: Path) -> None:
    capture = DATA / "iscsiadm" / "session-P3-lab.stdout"
    log = tmp_path / "x.jsonl"
    result = miglab("import", "auto", str(capture), "-o", str(log))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{capture}: cannot tell which tool wrote it: none of its " in result.stderr
    assert "give its KIND" in result.stderr and not log.exists()


def test_import_auto_refuses_a_file_with_lines_of_two_tools(tmp_path: Path) -> None:
    ping = (DATA / "probes" / "ping-loopback-c10-i0.2.txt").read_text()
    dbench = (DATA / "probes" / "dbench-t5-c2.txt").read_text()
    both = tmp_path / "both.txt"  # two real captures pasted into one file
    both.write_text(ping + dbench)
    log = tmp_path / "x.jsonl"
    result = miglab("import", "auto", str(both), "-o", str(log))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    first_dbench = len(ping.splitlines()) + 1
    assert f"lines of more than one tool: ping (line 1), dbench (line {first_dbench})" in (
        result.stderr
    )
    assert not log.exists()


def test_a_detected_tool_with_nothing_to_import_names_both(tmp_path: Path) -> None:
    capture = DATA / "probes" / "dbench-missing-dir.txt"
    result = miglab("import", "auto", str(capture), "-o", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2
    assert f"{capture}: detected dbench (dbench 4.00), but cannot import it: no dbench" in (
        result.stderr
    )


def test_an_explicit_kind_that_does_not_fit_names_the_tool_it_looks_like(tmp_path: Path) -> None:
    capture = DATA / "probes" / "dbench-t5-c2.txt"
    result = miglab("import", "ping", str(capture), "-o", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2
    assert "not ping output: no ping readings found (it looks like dbench output" in (result.stderr)
