"""Compose the ``targetcli ls`` trees in this directory (LIO cannot run here).

The layout is configshell-fb's tree renderer as it appears in public ``targetcli ls``
logs: ``o- NAME .... [SUMMARY]`` padded with dots to the console width, two columns of
prefix a level (``| `` under an ancestor that has a later sibling), and no dots at all
(two spaces) when the line is wider than the console. Summaries are targetcli-fb's
``summary()`` texts. Run ``python compose_transcripts.py`` to regenerate.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent

Tree = tuple[str, str, list["Tree"]]


def render(root: Tree, width: int) -> str:
    lines: list[str] = []

    def walk(node: Tree, prefix: str, child_prefix: str) -> None:
        name, summary, children = node
        head = f"{prefix}o- {name} "
        tail = f"[{summary}]"
        dots = width - len(head) - len(tail) - 1
        lines.append(head + ("." * dots + " " if dots > 0 else " ") + tail)
        for i, child in enumerate(children):
            last = i == len(children) - 1
            walk(child, child_prefix, child_prefix + ("  " if last else "| "))

    walk(root, "", "  ")
    return "\n".join(lines) + "\n"


def alua() -> Tree:
    return ("alua", "ALUA Groups: 1", [("default_tg_pt_gp", "ALUA state: Active/optimized", [])])


IQN = "iqn.2024-01.lab.storage:disk1"


def lab_tree(with_alua: bool) -> Tree:
    gp = " (default_tg_pt_gp)" if with_alua else ""
    block = (
        "disk1",
        "/dev/vg0/guest (10.0GiB) write-thru activated",
        [alua()] if with_alua else [],
    )
    fileio = (
        "scratch",
        "/srv/scratch.img (1.0GiB) write-back activated",
        [alua()] if with_alua else [],
    )

    def acl(who: str) -> Tree:
        return (who, "Mapped LUNs: 1", [("mapped_lun0", "lun0 block/disk1 (rw)", [])])

    tpg = (
        "tpg1",
        "no-gen-acls, no-auth",
        [
            (
                "acls",
                "ACLs: 2",
                [acl("iqn.2024-01.lab.client:xen1"), acl("iqn.2024-01.lab.client:xen2")],
            ),
            ("luns", "LUNs: 1", [("lun0", f"block/disk1 (/dev/vg0/guest){gp}", [])]),
            ("portals", "Portals: 1", [("198.18.0.1:3260", "OK", [])]),
        ],
    )
    children: list[Tree] = [
        (
            "backstores",
            "...",
            [
                ("block", "Storage Objects: 1", [block]),
                ("fileio", "Storage Objects: 1", [fileio]),
                ("pscsi", "Storage Objects: 0", []),
                ("ramdisk", "Storage Objects: 0", []),
            ],
        ),
        ("iscsi", "Targets: 1", [(IQN, "TPGs: 1", [tpg])]),
        ("loopback", "Targets: 0", []),
    ]
    if with_alua:
        children += [("vhost", "Targets: 0", []), ("xen-pvscsi", "Targets: 0", [])]
    return ("/", "...", children)


def demo_mode_subtree() -> Tree:
    """`targetcli ls /iscsi` of a demo-mode target, as after `/iscsi create` with defaults."""
    long_so = "iqn.2024-01.lab.storage:disk2-backing-object-with-a-long-name"
    tpg = (
        "tpg1",
        "gen-acls, no-auth",
        [
            ("acls", "ACLs: 0", []),
            (
                "luns",
                "LUNs: 1",
                [("lun0", f"fileio/{long_so} (/srv/lab/disk2.img) (default_tg_pt_gp)", [])],
            ),
            ("portals", "Portals: 2", [("0.0.0.0:3260", "OK", []), ("[::0]:3260", "OK", [])]),
        ],
    )
    return ("iscsi", "Targets: 1", [("iqn.2024-01.lab.storage:disk2", "TPGs: 1", [tpg])])


if __name__ == "__main__":
    (HERE / "targetcli-ls-lab.txt").write_text(render(lab_tree(with_alua=True), 131))
    (HERE / "targetcli-ls-lab-el7-style.txt").write_text(render(lab_tree(with_alua=False), 131))
    (HERE / "targetcli-ls-iscsi-demo-mode.txt").write_text(render(demo_mode_subtree(), 80))
