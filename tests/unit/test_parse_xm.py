"""parse_xm on every published xm output in tests/data/xm (README there: the sources).

Each test checks the values the capture's text states, and how many of its lines the
parser could not place (prompts, forum markup, a value wrapped onto a second line).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.drivers.parse_xl import MigratePhase
from backend.drivers.parse_xm import (
    XmMigrateError,
    XmMigrateParser,
    XmState,
    parse_xm_info,
    parse_xm_list,
    parse_xm_list_long,
    parse_xm_migrate,
)
from tests.conftest import DATA

XM = DATA / "xm"


def read(name: str) -> str:
    return (XM / name).read_text()


def rows(name: str) -> list[tuple[str, int | None, int, int, str, float]]:
    listed = parse_xm_list(read(name))
    return [
        (d.name, d.domid, d.mem_mib, d.vcpus, str(d.state), d.cpu_time_s) for d in listed.domains
    ]


def test_every_capture_is_tested_here() -> None:
    source = Path(__file__).read_text()
    captures = sorted(p.name for p in XM.glob("*.txt"))
    assert captures and [c for c in captures if c not in source] == []


# -- xm list ----------------------------------------------------------------------------


def test_list_of_xen_3_2_before_and_after_a_migration() -> None:
    assert rows("xm-list-3.2-before-migrate.txt") == [
        ("Domain-0", 0, 4737, 2, "r-----", 40349.4),
        ("highlander", 8, 768, 1, "-b----", 793.7),
        ("pbx", 3, 512, 1, "-b----", 13597.7),
        ("tundra", 6, 1024, 1, "-b----", 22172.6),
    ]
    # The prompt line is not understood; the header and the blank line are known.
    assert parse_xm_list(read("xm-list-3.2-before-migrate.txt")).lines_not_understood == 1
    after = parse_xm_list(read("xm-list-3.2-after-migrate.txt"))
    assert [(d.name, d.domid, d.cpu_time_s) for d in after.domains][2] == ("pbx", 9, 0.0)
    assert after.lines_not_understood == 2  # the prompts before and after


def test_list_of_the_xen_3_0_man_page() -> None:
    assert rows("xm-list-manpage-3.4.txt") == [
        ("Domain-0", 0, 98, 1, "r-----", 5068.6),
        ("Fedora3", 164, 128, 1, "r-----", 7.6),
        ("Fedora4", 165, 128, 1, "------", 0.6),
        ("Mandrake2006", 166, 128, 1, "-b----", 3.6),
        ("Mandrake10.2", 167, 128, 1, "------", 2.5),
        ("Suse9.2", 168, 100, 1, "------", 1.8),
    ]
    assert parse_xm_list(read("xm-list-manpage-3.4.txt")).lines_not_understood == 0


def test_list_with_labels_in_squeezed_columns() -> None:
    listed = parse_xm_list(read("xm-list-label-manual-3.4.txt"))
    assert [(d.name, d.domid, d.mem_mib, str(d.state), d.label) for d in listed.domains] == [
        ("domain1", 1, 128, "-b----", "ACM:mytest:__UNLABELED__"),
        ("Domain-0", 0, 875, "r-----", "ACM:mytest:SystemManagement"),
    ]
    assert listed.lines_not_understood == 1  # "# xm list --label"


def test_state_letters_are_xends_rbpscd() -> None:
    crashed = XmState.parse("----c-")
    assert crashed is not None and crashed.crashed and not crashed.shutdown
    assert str(crashed) == "----c-"
    assert XmState.parse("r-----") == XmState(True, False, False, False, False, False)
    assert XmState.parse("-b--s-") is None  # xl's shutdown-reason column is no xm state


def test_list_never_raises_and_counts_what_it_cannot_place() -> None:
    text = read("xm-list-3.2-before-migrate.txt")
    mangled = "\n".join(
        [text, "Traceback (most recent call last):", "guest 4 x 1 -b---- 1.0", "\x00\x1b[2J"]
    )
    listed = parse_xm_list(mangled)
    assert len(listed.domains) == 4 and listed.lines_not_understood == 4
    # A row cut short by a paste is not half a domain.
    cut = text.splitlines()[2][:50]
    assert parse_xm_list(cut).domains == () and parse_xm_list(cut).lines_not_understood == 1


def test_a_managed_domain_that_is_not_running_has_no_id() -> None:
    # main.py xm_brief_list prints domid with '%5s': empty for a halted managed domain.
    listed = parse_xm_list(
        "guest                                           1024     2     ------      0.0"
    )
    assert [(d.name, d.domid, d.mem_mib, d.vcpus) for d in listed.domains] == [
        ("guest", None, 1024, 2)
    ]


# -- xm info ----------------------------------------------------------------------------


def test_info_of_xen_3_3_pasted_with_forum_markup() -> None:
    info = parse_xm_info(read("xm-info-3.3-forum.txt"))
    assert (info.host, info.release, info.nr_cpus) == ("chetan-laptop", "2.6.26-2-xen-686", 2)
    assert (info.total_memory_mib, info.free_memory_mib) == (2046, 126)
    assert (info.xen_major, info.xen_minor, info.xen_extra) == (3, 3, ".0")
    assert info.xen_version == "3.3.0"
    assert info.get("virt_caps") == "" and info.get("xen_caps") == "xen-3.0-x86_32p"
    assert info.get("version") == "#1 SMP Mon Aug 30 10:02:38 UTC 2010"
    assert info.get("xend_config_format") == "4"
    assert len(info.fields) == 28 and info.lines_not_understood == 1  # the BBCode prompt


def test_info_of_xen_3_0_devel_with_wrapped_values() -> None:
    info = parse_xm_info(read("xm-info-manpage-3.4.txt"))
    assert (info.host, info.total_memory_mib, info.free_memory_mib) == ("talon", 767, 37)
    assert info.xen_version == "3.0-devel"
    assert info.get("xen_scheduler") == "credit" and info.get("xend_config_format") == "3"
    # The two continuation lines the man page wrapped by hand are not keys.
    assert info.lines_not_understood == 2
    assert info.get("xen_changeset") == "Mon Nov 14 18:13:38 2005 +0100"


def test_info_without_the_version_lines_has_no_version() -> None:
    head = "".join(read("xm-info-3.3-forum.txt").splitlines(keepends=True)[:10])
    info = parse_xm_info(head)
    assert info.host == "chetan-laptop" and info.xen_version is None and info.xen_major is None
    assert info.total_memory_mib is None


# -- xm list -l -------------------------------------------------------------------------


def test_list_long_sxp_of_xen_3_3_1() -> None:
    long = parse_xm_list_long(read("xm-list-long-3.3-forum.txt"))
    assert long.lines_not_understood == 1  # the prompt
    [dom] = long.domains
    assert (dom.name, dom.domid, dom.vcpus, dom.memory_mib, dom.max_memory_mib) == (
        "UbuntuPVS810",
        15,
        1,
        4096,
        4096,
    )
    assert dom.uuid == "d9a1b362-c834-67ab-4e9d-d4b706699297" and dom.complete
    assert str(dom.state) == "-b----" and dom.image == "linux"
    assert [(d.uname, d.dev, d.mode, d.target) for d in dom.disks] == [
        ("phy:/dev/sdb7", "xvda:disk", "w", "/dev/sdb7")
    ]
    assert [(n.mac, n.bridge) for n in dom.nics] == [("00:16:3e:1b:8b:d2", "eth0")]


def test_list_long_cut_short_keeps_what_it_read() -> None:
    lines = read("xm-list-long-3.3-forum.txt").splitlines()
    cut = "\n".join(lines[:20])  # ends inside the domain, before (image
    [dom] = parse_xm_list_long(cut).domains
    assert (dom.name, dom.memory_mib, dom.complete, dom.disks) == ("UbuntuPVS810", 4096, False, ())
    assert dom.state is None  # (state ...) comes later: not read, not guessed
    unbalanced_quote = "(domain\n    (name 'guest)\n"
    [half] = parse_xm_list_long(unbalanced_quote).domains
    assert half.name is None and not half.complete


# -- xm migrate -------------------------------------------------------------------------


def test_migrate_that_worked_prints_nothing() -> None:
    result = parse_xm_migrate(read("xm-migrate-3.2-localhost-ok.txt"), exit_status=0)
    assert result.ok and result.error is None and result.kind is None
    assert result.lines_not_understood == 1  # the prompt


def test_migrate_that_failed_in_xc_save() -> None:
    result = parse_xm_migrate(read("xm-migrate-3.2-xc_save-failed.txt"))
    assert not result.ok
    assert result.error == "/usr/lib/xen/bin/xc_save 4 3 0 0 1 failed"
    assert result.kind is XmMigrateError.SAVE_FAILED and result.resumed_at_source is True
    # The usage text is xm's own: known. The two prompts are not.
    assert result.lines_not_understood == 2


def test_migrate_parser_as_the_driver_feeds_it() -> None:
    parser = XmMigrateParser()
    assert (
        parser.opening().phase is MigratePhase.STARTED and parser.opening().event == "no-progress"
    )
    updates = [
        u
        for line in read("xm-migrate-3.2-xc_save-failed.txt").splitlines()
        for u in parser.feed(line)
    ]
    assert [(u.phase, u.event, u.final) for u in updates] == [
        (MigratePhase.FAILED, "save-failed", True)
    ]
    assert parser.finish(1) == [] and parser.result is updates[0]
    assert all(u.iteration is None and u.pages is None for u in parser.history)  # none invented

    silent = XmMigrateParser()
    [end] = silent.finish(0)
    assert (end.phase, end.final, end.error) == (MigratePhase.DONE, True, None)
    failed = XmMigrateParser()
    [end] = failed.finish(1)
    assert (end.phase, end.error) == (MigratePhase.FAILED, "xm exited with status 1")


@pytest.mark.parametrize("name", sorted(p.name for p in XM.glob("*.txt")))
def test_every_line_of_any_capture_is_read_or_counted(name: str) -> None:
    """Whatever parser a capture meets (a KIND=auto import tries them all), none raises,
    and each non-blank line is either understood or counted."""
    whole = read(name)
    for text in (whole, whole[: len(whole) // 2]):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        headers = sum(1 for line in lines if line.startswith("Name ") and "VCPUs" in line)
        listed = parse_xm_list(text)
        assert len(listed.domains) + headers + listed.lines_not_understood == len(lines)
        info = parse_xm_info(text)
        assert len(info.fields) + info.lines_not_understood == len(lines)
        assert parse_xm_list_long(text).lines_not_understood <= len(lines)
        assert parse_xm_migrate(text).lines_not_understood <= len(lines)
