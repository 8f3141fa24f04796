"""IET parsers and the ietd.conf renderer (tests/data/iet; IET cannot run here)."""

from __future__ import annotations

import dataclasses

import pytest

from backend.drivers import ParseError
from backend.drivers.parse_iet import (
    IetConf,
    IetLun,
    IetTarget,
    IetUser,
    parse_ietd_conf,
    parse_proc_session,
    parse_proc_volume,
    remove_ietd_target,
    render_ietd_conf,
    render_ietd_target,
    upsert_ietd_target,
)
from tests.conftest import DATA

IET = DATA / "iet"
DISK1 = "iqn.2024-01.lab.storage:disk1"


def read(name: str) -> str:
    return (IET / name).read_text()


def test_public_proc_volume_and_session() -> None:
    [vol] = parse_proc_volume(read("proc-net-iet-volume-public.txt"))
    assert (vol.tid, vol.name) == (1, "iqn.foo.example")
    [lun] = vol.luns
    assert (lun.lun, lun.iotype, lun.iomode, lun.blocks, lun.blocksize) == (
        1,
        "fileio",
        "wt",
        4194304,
        512,
    )
    assert lun.path == "/dev/cinder-volumes/lvol0" and lun.size_bytes == 2 << 30
    [target] = parse_proc_session(read("proc-net-iet-session-public.txt"))
    [session] = target.sessions
    assert session.sid == 562949990973952
    assert session.initiator == "iqn.1993-08.org.debian:01:5d5f7d6e2951"
    assert session.connections[0].ip == "192.168.1.5"
    assert session.connections[0].state == "active"


def test_lab_proc_files() -> None:
    scratch, disk1 = parse_proc_volume(read("proc-net-iet-volume-lab.txt"))
    assert scratch.luns[0].path == "/srv/iet/scratch disk.img"  # path runs to end of line
    assert disk1.luns[0].iotype == "blockio" and disk1.luns[0].size_bytes == 10 << 30
    idle, busy = parse_proc_session(read("proc-net-iet-session-lab.txt"))
    assert idle.sessions == ()
    assert busy.name == DISK1
    assert busy.initiators == ("iqn.2024-01.lab.client:xen2", "iqn.2024-01.lab.client:xen1")
    assert [s.connections[0].ip for s in busy.sessions] == ["198.18.0.12", "198.18.0.11"]


def test_ietd_conf() -> None:
    conf = parse_ietd_conf(read("ietd.conf"))
    assert conf.discovery_incoming_users == (IetUser("discovery-user", "discovery-secret1"),)
    assert conf.global_params == (("iSNSAccessControl", "No"),)
    disk1 = conf.target(DISK1)
    assert disk1 is not None
    assert disk1.luns == (
        IetLun(
            0, "/dev/vg0/guest", "blockio", (("ScsiId", "miglab0001"), ("ScsiSN", "miglab0001"))
        ),
    )
    assert disk1.incoming_users == (IetUser("xen-hosts", "lab-chap-secret"),)
    assert disk1.outgoing_user == IetUser("storage", "lab-mutual-secret")
    assert disk1.alias == "guest-disk"
    assert disk1.params == (("MaxConnections", "1"), ("InitialR2T", "Yes"), ("ImmediateData", "No"))
    scratch = conf.targets[1]
    assert scratch.luns[0].type == "fileio" and scratch.luns[0].params == (("IOMode", "wb"),)


def test_passwords_stay_out_of_repr() -> None:
    conf = parse_ietd_conf(read("ietd.conf"))
    text = repr(conf)
    assert "lab-chap-secret" not in text and "discovery-secret1" not in text
    assert "xen-hosts" in text


def test_render_round_trip() -> None:
    target = IetTarget(
        DISK1,
        luns=(IetLun(0, "/dev/vg0/guest", "blockio"), IetLun(1, "/srv/b.img", "fileio")),
        incoming_users=(IetUser("xen-hosts", "s3cret"),),
        alias="guest-disk",
        params=(("MaxConnections", "1"),),
    )
    block = render_ietd_target(target)
    assert block == (
        f"Target {DISK1}\n"
        "    IncomingUser xen-hosts s3cret\n"
        "    Lun 0 Path=/dev/vg0/guest,Type=blockio\n"
        "    Lun 1 Path=/srv/b.img,Type=fileio\n"
        "    Alias guest-disk\n"
        "    MaxConnections 1\n"
    )
    assert parse_ietd_conf(block).targets == (target,)
    conf = parse_ietd_conf(read("ietd.conf"))
    assert parse_ietd_conf(render_ietd_conf(conf)) == conf
    assert render_ietd_conf(IetConf()) == ""


def test_upsert_replaces_only_that_block() -> None:
    original = read("ietd.conf")
    conf = parse_ietd_conf(original)
    disk1 = conf.target(DISK1)
    assert disk1 is not None
    changed = dataclasses.replace(disk1, luns=(IetLun(0, "/dev/vg1/guest", "blockio"),))
    text = upsert_ietd_target(original, changed)
    again = parse_ietd_conf(text)
    assert again.target(DISK1) == changed
    assert again.targets[1] == conf.targets[1]
    # Comments and the untouched target keep their exact text.
    assert "# The guest's disk, exported to both Xen hosts.\n" in text
    assert text.endswith(original[original.index("# A scratch LUN") :])
    assert upsert_ietd_target(text, changed) == text  # idempotent


def test_upsert_appends_and_remove_drops() -> None:
    original = read("ietd.conf")
    new = IetTarget("iqn.2024-01.lab.storage:disk3", luns=(IetLun(0, "/dev/vg0/d3", "blockio"),))
    text = upsert_ietd_target(original, new)
    assert text.startswith(original) and text.endswith(render_ietd_target(new))
    assert [t.name for t in parse_ietd_conf(text).targets][-1] == new.name
    removed = remove_ietd_target(text, new.name)
    assert parse_ietd_conf(removed) == parse_ietd_conf(original)
    gone = remove_ietd_target(original, DISK1)
    assert [t.name for t in parse_ietd_conf(gone).targets] == ["iqn.2024-01.lab.storage:scratch"]
    assert remove_ietd_target(original, "iqn.nope") == original
    assert upsert_ietd_target("", new) == render_ietd_target(new)


def test_render_refuses_what_ietd_conf_cannot_hold() -> None:
    with pytest.raises(ValueError):
        render_ietd_target(IetTarget("has space"))
    with pytest.raises(ValueError):
        render_ietd_target(IetTarget(DISK1, luns=(IetLun(0, "/a,b"),)))
    with pytest.raises(ValueError):
        render_ietd_target(IetTarget(DISK1, incoming_users=(IetUser("u", "two words"),)))


@pytest.mark.parametrize(
    ("parser", "text", "bad"),
    [
        (parse_ietd_conf, "Target iqn.x:y\n    Lun zero Path=/x\n", "    Lun zero Path=/x"),
        (parse_ietd_conf, "Target iqn.x:y\n    Lun 0 Type=fileio\n", "    Lun 0 Type=fileio"),
        (parse_ietd_conf, "Target\n", "Target"),
        (
            parse_ietd_conf,
            "Target iqn.x:y\n    IncomingUser onlyuser\n",
            "    IncomingUser onlyuser",
        ),
    ],
)
def test_garbage_names_the_line(parser: object, text: str, bad: str) -> None:
    with pytest.raises(ParseError) as info:
        parser(text)  # type: ignore[operator]
    assert info.value.line == bad
