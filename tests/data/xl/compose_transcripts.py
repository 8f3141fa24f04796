# Lines are rendered with the C format strings of Xen's sources, so %-formatting is on
# purpose here: it keeps each format identical to the printf it stands for.
# ruff: noqa: UP031
"""Compose the xl transcripts in this directory from Xen's print formats.

Xen cannot run on the machine this project is built on, so these files are not
captures: each line is rendered here with the C format string of the Xen source that
prints it (see README.md for file -> function). Run ``python compose_transcripts.py``
to regenerate; the output is deterministic.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent

# xl_info.c list_domains(): header (with TABs) and one row per domain.
LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)"


def list_row(name: str, domid: int, mem: int, vcpus: int, state: str, cpu_s: float) -> str:
    return "%-40s %5d %5lu %5d     %s  %8.1f" % (name, domid, mem, vcpus, state, cpu_s)


def xl_lists() -> None:
    (HERE / "xl-list-xen1.txt").write_text(
        "\n".join(
            [
                LIST_HEADER,
                list_row("Domain-0", 0, 2048, 2, "r-----", 1234.5),
                list_row("guest", 5, 1024, 2, "-b----", 73.2),
                list_row("a-guest-with-a-name-longer-than-forty-columns", 6, 256, 1, "--p---", 0.4),
                list_row("crashed", 9, 128, 1, "---sc-", 2.0),
            ]
        )
        + "\n"
    )
    # On the target while the stream arrives: the new copy is paused, named --incoming.
    (HERE / "xl-list-xen2-incoming.txt").write_text(
        "\n".join(
            [
                LIST_HEADER,
                list_row("Domain-0", 0, 2048, 2, "r-----", 987.1),
                list_row("guest--incoming", 7, 1024, 2, "--p---", 0.0),
            ]
        )
        + "\n"
    )
    # On the source after GO: renamed away and suspended, until xl destroys it.
    (HERE / "xl-list-xen1-migratedaway.txt").write_text(
        "\n".join(
            [
                LIST_HEADER,
                list_row("Domain-0", 0, 2048, 2, "r-----", 1236.0),
                list_row("guest--migratedaway", 5, 1024, 2, "---ss-", 75.9),
            ]
        )
        + "\n"
    )


# xtl_logger_stdio.c: a message is "<context>: <level>: <text>\n"; libxc's DPRINTF
# strings of the v1 era end in "\n" themselves, hence an empty line after each.
def xc(level: str, text: str, v1_newline: bool = False) -> list[str]:
    return [f"xc: {level}: {text}"] + ([""] if v1_newline else [])


def progress(what: str, done: int, total: int, last_percent: int) -> tuple[list[str], int]:
    """xtl_progress + stdiostream_progress without CR (stderr is not a tty)."""
    percent = done * 100 // total if total else 0
    if percent == last_percent:
        return [], last_percent
    level = "detail" if last_percent < percent < last_percent + 5 else "progress"
    return xc(level, "%s: %lu/%lu  %3d%%" % (what, done, total, percent)), percent


def print_stats(wall_ms: int, d0: int, dt: int, sent: int, dirty: int) -> list[str]:
    """xc_domain_save.c print_stats(): rates in Mbit/s from 4 KiB pages."""
    per = wall_ms * (1000 // 8)
    return xc(
        "detail",
        "delta %dms, dom0 %d%%, target %d%%, sent %dMb/s, dirtied %dMb/s %d pages"
        % (wall_ms, d0, dt, sent * 4096 // per, dirty * 4096 // per, dirty),
        v1_newline=True,
    )


def migrate_v1() -> None:
    """`xl -v migrate guest xen2`, Xen 4.4 (migration v1), a 128 MiB PV guest.

    Rounds: all 32768 pages, then 1702, 281 and 40 dirty pages; 40+2 < 50 ends the
    live rounds; the last round sends 41 with the guest suspended.
    """
    p2m = 32768
    out = [
        "migration target: Ready to receive domain.",
        "Saving to migration stream new xl format (info 0x0/0x0/1071)",
        "Loading new save file <incoming migration stream> (new xl fmt info 0x0/0x0/1071)",
        " Savefile contains xl domain config",
        *xc("detail", "xc_domain_restore start: p2m_size = %lx" % p2m, v1_newline=True),
        *xc("detail", "Had 0 unexplained entries in p2m table", v1_newline=True),
    ]
    received, last = 0, 0

    def receive(pages: int) -> None:
        nonlocal received, last
        while pages:
            batch = min(pages, 1024)  # MAX_BATCH_SIZE
            pages -= batch
            received += batch
            lines, last = progress("Reloading memory pages", received, p2m, last)
            out.extend(lines)

    receive(p2m)
    out += print_stats(11452, 7, 1, sent=p2m, dirty=1867)
    receive(1702)
    out += print_stats(652, 5, 2, sent=1702, dirty=310)
    receive(281)
    out += print_stats(113, 4, 2, sent=281, dirty=45)
    receive(40)
    out += xc("detail", "Start last iteration", v1_newline=True)
    out += xc("detail", "SUSPEND shinfo %08lx" % 0x23F1A7, v1_newline=True)
    out += print_stats(17, 12, 0, sent=40, dirty=38)
    receive(41)
    out += print_stats(9, 33, 0, sent=41, dirty=38)
    total = p2m + 1702 + 281 + 40 + 41
    out += xc("detail", "Total pages sent= %ld (%.2fx)" % (total, total / p2m), v1_newline=True)
    out += xc("detail", "(of which %ld were fixups)" % 0, v1_newline=True)
    out += xc("detail", "All memory is saved", v1_newline=True)
    out += xc("detail", "Save exit rc=%d" % 0, v1_newline=True)
    out += [
        "migration target: Transfer complete, requesting permission to start domain.",
        "migration sender: Target has acknowledged transfer.",
        "migration sender: Giving target permission to start.",
        "migration target: Got permission, starting domain.",
        "migration target: Domain started successsfully.",
        "migration sender: Target reports successful startup.",
        "Migration successful.",
    ]
    (HERE / "xl-migrate-v1-4.4-verbose.txt").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    xl_lists()
    migrate_v1()
