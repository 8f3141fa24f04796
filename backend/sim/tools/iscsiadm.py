"""A fake open-iscsi ``iscsiadm`` (2.1.8) with its kernel side: node records, sessions, disks.

The kernel half of open-iscsi cannot run on this machine, so this fake plays iscsiadm,
iscsid and udev together. Where ``tests/data/iscsiadm`` has a real capture (records,
"No records found", "No active sessions.", login without iscsid, usage errors) the
output is that capture; the rest follows open-iscsi's print formats as documented in
that directory's README and TOOL-FORMATS.md §3.

State, under ``state["iscsiadm"]`` (see :func:`new_state`):

* ``portals``: what the network offers, ``{"ADDR:PORT": [target, ...]}`` with a target
  ``{"iqn", "tpgt", "luns": [{"lun": N, "disk": bool}], "chap": {"user", "password"}
  | None, "allow": [initiator names] | None}``. :func:`offer_target` fills it.
* ``nodes`` (the record database), ``sessions`` (with their SCSI disks), counters,
  ``iscsid`` / ``transport_loaded`` switches, and ``udev_delay``: how many
  ``test -b`` look-ups a new disk's ``/dev/disk/by-path`` link stays missing
  (udev is asynchronous).

:func:`test_block` answers ``test -b PATH`` for the disks of logged-in sessions
(the simulated hosts' ``test``, :mod:`backend.sim.commands.storage`).
"""

from __future__ import annotations

import getopt
from typing import Any

from backend.sim.tools import Result

__all__ = [
    "VERSION",
    "by_path_links",
    "new_state",
    "offer_target",
    "run",
    "test_block",
]

VERSION = "2.1.8"
PROGRAM = "iscsiadm"

# include/iscsi_err.h
OK = 0
ERR_TRANS = 4
ERR_INVAL = 7
ERR_TRANS_TIMEOUT = 8
ERR_TRANS_NOT_FOUND = 12
ERR_SESS_EXISTS = 15
ERR_FATAL_LOGIN = 19
ERR_ISCSID_NOTCONN = 20
ERR_NO_OBJS_FOUND = 21
ERR_LOGIN_AUTH_FAILED = 24

_SHORT = "RlVhm:p:P:T:H:I:U:L:d:r:n:v:o:sSt:uk:x:A:W:"
_LONG = [
    "mode=",
    "portal=",
    "targetname=",
    "interface=",
    "op=",
    "type=",
    "name=",
    "value=",
    "host=",
    "sid=",
    "rescan",
    "print=",
    "discover",
    "login",
    "loginall=",
    "logout",
    "logoutall=",
    "stats",
    "killiscsid=",
    "debug=",
    "show",
    "version",
    "help",
    "submode=",
    "index=",
    "portal_type=",
]
_LONG_TO_SHORT = {
    "--mode": "-m",
    "--portal": "-p",
    "--targetname": "-T",
    "--interface": "-I",
    "--op": "-o",
    "--type": "-t",
    "--name": "-n",
    "--value": "-v",
    "--host": "-H",
    "--sid": "-r",
    "--rescan": "-R",
    "--print": "-P",
    "--login": "-l",
    "--logout": "-u",
    "--stats": "-s",
    "--show": "-S",
    "--version": "-V",
    "--help": "-h",
}
_TRY = f"Try `{PROGRAM} --help' for more information.\n"

# The record keys a new node gets; ``-o update`` may only change known keys.
_NODE_DEFAULTS = {
    "node.startup": "manual",
    "node.session.auth.authmethod": "None",
    "node.session.auth.username": "",
    "node.session.auth.password": "",
    "node.session.auth.username_in": "",
    "node.session.auth.password_in": "",
    "node.session.timeo.replacement_timeout": "120",
    "node.conn[0].startup": "manual",
}
_HIDDEN = {"node.session.auth.password", "node.session.auth.password_in"}


def new_state(
    initiator_name: str = "iqn.1993-08.org.debian:01:miglab", ip: str = ""
) -> dict[str, Any]:
    """A host with open-iscsi installed and iscsid running, no records, no sessions."""
    return {
        "iscsid": True,
        "transport_loaded": True,
        "initiator_name": initiator_name,
        "iface_ip": ip,
        "portals": {},
        "nodes": [],
        "sessions": [],
        "next_sid": 1,
        "next_host": 2,
        "next_disk": 1,
        "udev_delay": 0,
    }


def _state(state: dict[str, Any]) -> dict[str, Any]:
    own: dict[str, Any] = state.setdefault("iscsiadm", {})
    for key, value in new_state().items():
        own.setdefault(key, value)
    return own


def offer_target(
    state: dict[str, Any],
    portal: str,
    iqn: str,
    luns: list[tuple[int, bool]],
    *,
    tpgt: int = 1,
    chap: tuple[str, str] | None = None,
    allow: list[str] | None = None,
    size_bytes: int = 64 << 20,
) -> None:
    """Let the network offer ``iqn`` at ``portal`` ("ADDR:PORT") to this host.

    ``luns`` is ``[(lun, is_disk)]``: tgt offers ``[(0, False), (1, True)]`` (a
    controller at LUN 0), LIO and IET ``[(0, True)]``; each disk is ``size_bytes``.
    ``chap`` is the (user, password) a login must bring; ``allow`` the initiator names
    the target admits (None: all). The fake ``iscsi-ls`` reads the same view.
    """
    own = _state(state)
    targets = [t for t in own["portals"].get(portal, []) if t["iqn"] != iqn]
    targets.append(
        {
            "iqn": iqn,
            "tpgt": tpgt,
            "luns": [{"lun": n, "disk": d, "size": size_bytes if d else 0} for n, d in luns],
            "chap": None if chap is None else {"user": chap[0], "password": chap[1]},
            "allow": allow,
        }
    )
    own["portals"][portal] = targets


# --- addresses ---------------------------------------------------------------------


def _split_portal(text: str) -> tuple[str, int | None] | None:
    """``ADDR[:PORT]`` or ``[V6][:PORT]`` -> (address, port or None); None if unreadable."""
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        address, port = text.split(":")
    else:
        address, port = text, None  # no port, or a bare IPv6 address
    if not address or (port is not None and not port.isdigit()):
        return None
    return address, None if port is None else int(port)


def _with_default_port(text: str) -> tuple[str, int] | None:
    portal = _split_portal(text)
    if portal is None:
        return None
    return portal[0], 3260 if portal[1] is None else portal[1]


def _portal_key(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _flat(address: str, port: int, tpgt: int) -> str:
    # usr/idbm.c prints "%s:%d,%d"; a manual record's -1 tpgt comes out unsigned.
    return f"{_portal_key(address, port)},{tpgt % (1 << 32)}"


def by_path_links(state: dict[str, Any]) -> dict[str, str]:
    """``/dev/disk/by-path/...`` name -> kernel disk name, for every attached disk."""
    links: dict[str, str] = {}
    for session in _state(state)["sessions"]:
        for lun, disk in session["disks"].items():
            name = f"ip-{session['address']}:{session['port']}-iscsi-{session['iqn']}-lun-{lun}"
            links["/dev/disk/by-path/" + name] = disk
    return links


# --- the command line ------------------------------------------------------------


class _Usage(Exception):
    def __init__(self, code: int, stderr: str) -> None:
        self.code = code
        self.stderr = stderr


_MODES = ("discoverydb", "discovery", "node", "session", "iface", "fw", "host")


def _mode_given(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        value = None
        if arg in ("-m", "--mode") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--mode="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-m") and len(arg) > 2 and not arg.startswith("--"):
            value = arg[2:]
        if value in _MODES:
            return value
    return None


def _parse(argv: list[str]) -> dict[str, list[str]]:
    try:
        opts, rest = getopt.gnu_getopt(argv[1:], _SHORT, _LONG)
    except getopt.GetoptError as exc:
        option = exc.opt
        if option and len(option) > 1:
            text = f"{PROGRAM}: unrecognized option '--{option}'\n"
            raise _Usage(ERR_INVAL, text + _TRY) from None
        if "requires argument" in exc.msg:
            text = f"{PROGRAM}: option requires an argument -- '{option}'\n"
        else:
            text = f"{PROGRAM}: invalid option -- '{option}'\n"
        # getopt's '?' reaches iscsiadm's own switch: with a mode given it is that mode's
        # refusal, else an unrecognized character (as the real iscsiadm 2.1.8 here says).
        mode = _mode_given(argv[1:])
        if mode is not None:
            # Its first pass over the options (looking for -m) stops at the mode: an
            # option before it is complained about in both passes.
            mode_at = min(i for i, a in enumerate(argv) if a.startswith(("-m", "--mode")))
            bad_at = next(
                (i for i, a in enumerate(argv) if a.startswith("-") and option in a[1:2]), 0
            )
            if 0 < bad_at < mode_at:
                text += text
            text += f"{PROGRAM}: {mode} mode: option '-?' is not allowed/supported\n"
        else:
            text += f"{PROGRAM}: unrecognized character '{option}'\n"
        raise _Usage(ERR_INVAL, text) from None
    if rest:
        raise _Usage(ERR_INVAL, f"{PROGRAM}: unrecognized option '{rest[0]}'\n" + _TRY)
    parsed: dict[str, list[str]] = {}
    for name, value in opts:
        parsed.setdefault(_LONG_TO_SHORT.get(name, name), []).append(value)
    return parsed


def run(argv: list[str], state: dict[str, Any]) -> Result:
    """Run ``iscsiadm`` with ``argv`` (``argv[0]`` is the program name)."""
    try:
        opts = _parse(argv)
    except _Usage as usage:
        return usage.code, "", usage.stderr
    if "-V" in opts:
        return OK, f"{PROGRAM} version {VERSION}\n", ""
    if "-h" in opts:
        return OK, _help(), ""
    if "-m" not in opts:
        return ERR_INVAL, "", _TRY
    mode = opts["-m"][-1]
    own = _state(state)
    op = opts.get("-o", [None])[-1]
    if op is not None and op not in ("new", "delete", "update", "show", "nonpersistent"):
        return ERR_INVAL, "", f"{PROGRAM}: can not recognize operation: '{op}'\n"
    if mode in ("discovery", "discoverydb"):
        return _discovery(own, opts)
    if mode == "node":
        return _node(own, opts, op)
    if mode == "session":
        return _session(own, opts)
    return ERR_INVAL, "", f"{PROGRAM}: mode -1 is not yet supported\n"


def _help() -> str:
    return (
        "iscsiadm -m discoverydb [-hV] [-d debug_level] [-P printlevel] [-t type -p ip:port "
        "-I ifaceN ... [-Dl]] | [[-p ip:port -t type] [-o operation] [-n name] [-v value] "
        "[-lD]]\n"
        "iscsiadm -m discovery [-hV] [-d debug_level] [-P printlevel] [-t type -p ip:port "
        "-I ifaceN ... [-l]] | [[-p ip:port] [-l | -D]] [-W]\n"
        "iscsiadm -m node [-hV] [-d debug_level] [-P printlevel] [-L all,manual,automatic,"
        "onboot] [-W] [-U all,manual,automatic,onboot] [-S] [[-T targetname -p ip:port "
        "-I ifaceN] [-l | -u | -R | -s]] [[-o operation ] [-n name] [-v value]]\n"
        "iscsiadm -m session [-hV] [-d debug_level] [-P printlevel] [-r sessionid | "
        "sysfsdir [-R | -u | -s] [-o operation] [-n name] [-v value]]\n"
    )


# --- discovery -----------------------------------------------------------------------


def _visible(target: dict[str, Any], initiator: str) -> bool:
    allow = target.get("allow")
    return allow is None or initiator in allow


def _discovery(own: dict[str, Any], opts: dict[str, list[str]]) -> Result:
    kind = opts.get("-t", [None])[-1]
    if kind not in ("sendtargets", "st"):
        if kind is None and "-p" not in opts:
            return ERR_INVAL, "", f"{PROGRAM}: Please specify portal as <ipaddr>[:<ipport>]\n"
        if kind is not None:
            return 30, "", f"{PROGRAM}: Unsupported discovery type.\n"
    portal = _with_default_port(opts.get("-p", [""])[-1])
    if portal is None:
        return ERR_INVAL, "", f"{PROGRAM}: Please specify portal as <ipaddr>[:<ipport>]\n"
    address, port = portal
    if not own["transport_loaded"]:
        return (
            ERR_TRANS_NOT_FOUND,
            "",
            f"{PROGRAM}: Could not insert module tcp. Kmod error -2\n"
            f"{PROGRAM}: iSCSI driver tcp is not loaded. Load the module then retry the command.\n"
            f"{PROGRAM}: Could not perform SendTargets discovery: iSCSI driver not found. "
            "Please make sure it is loaded, and retry the operation\n",
        )
    offered = own["portals"].get(_portal_key(address, port))
    if offered is None:
        refused = f"{PROGRAM}: cannot make connection to {address}: Connection refused\n"
        return (
            ERR_TRANS,
            "",
            refused * 6
            + f"{PROGRAM}: connection login retries (reopen_max) 5 exceeded\n"
            + f"{PROGRAM}: Could not perform SendTargets discovery: "
            "encountered connection failure\n",
        )
    lines = []
    for target in offered:
        if not _visible(target, own["initiator_name"]):
            continue
        lines.append(f"{_flat(address, port, target['tpgt'])} {target['iqn']}\n")
        _add_node(own, address, port, target["tpgt"], target["iqn"])
    return OK, "".join(lines), ""


# --- node records --------------------------------------------------------------------


def _add_node(own: dict[str, Any], address: str, port: int, tpgt: int, iqn: str) -> None:
    for node in own["nodes"]:
        if node["iqn"] == iqn and node["address"] == address and node["port"] == port:
            node["tpgt"] = tpgt
            return
    own["nodes"].append(
        {
            "iqn": iqn,
            "address": address,
            "port": port,
            "tpgt": tpgt,
            "settings": dict(_NODE_DEFAULTS),
        }
    )


def _matching_nodes(own: dict[str, Any], opts: dict[str, list[str]]) -> list[dict[str, Any]]:
    iqn = opts.get("-T", [None])[-1]
    portal_text = opts.get("-p", [None])[-1]
    portal = _split_portal(portal_text) if portal_text else None
    found = []
    for node in own["nodes"]:
        if iqn is not None and node["iqn"] != iqn:
            continue
        if portal is not None:
            if node["address"] != portal[0]:
                continue
            if portal[1] is not None and node["port"] != portal[1]:
                continue
        found.append(node)
    return found


def _iface_portal(node: dict[str, Any]) -> str:
    return f"[iface: default, target: {node['iqn']}, portal: {node['address']},{node['port']}]"


def _node(own: dict[str, Any], opts: dict[str, list[str]], op: str | None) -> Result:
    if op == "new":
        iqn = opts.get("-T", [None])[-1]
        portal = _with_default_port(opts.get("-p", [""])[-1])
        if iqn is None or portal is None:
            return ERR_INVAL, "", f"{PROGRAM}: portal and target required for new node\n"
        own["nodes"] = [
            n for n in own["nodes"] if not (n["iqn"] == iqn and (n["address"], n["port"]) == portal)
        ]
        _add_node(own, portal[0], portal[1], -1, iqn)
        return (
            OK,
            f"New iSCSI node [tcp:[hw=,ip=,net_if=,iscsi_if=default] {portal[0]},{portal[1]},-1 "
            f"{iqn}] added\n",
            "",
        )
    nodes = _matching_nodes(own, opts)
    login, logout = "-l" in opts, "-u" in opts
    if not nodes and not logout:
        return ERR_NO_OBJS_FOUND, "", f"{PROGRAM}: No records found\n"
    if login:
        return _login(own, nodes)
    if logout:
        return _logout(own, opts)
    if op == "delete":
        own["nodes"] = [n for n in own["nodes"] if n not in nodes]
        return OK, "", ""
    if op == "update":
        name = opts.get("-n", [None])[-1]
        value = opts.get("-v", [""])[-1]
        if name is None or name not in _NODE_DEFAULTS:
            return ERR_INVAL, "", f"{PROGRAM}: Cannot modify {name}. Invalid param name.\n"
        for node in nodes:
            node["settings"][name] = value
        return OK, "", ""
    if op == "show" or "-T" in opts:
        return OK, "".join(_record(node, "-S" in opts) for node in nodes), ""
    return (
        OK,
        "".join(f"{_flat(n['address'], n['port'], n['tpgt'])} {n['iqn']}\n" for n in nodes),
        "",
    )


def _record(node: dict[str, Any], show_secrets: bool) -> str:
    lines = [
        f"# BEGIN RECORD {VERSION}",
        f"node.name = {node['iqn']}",
        f"node.tpgt = {node['tpgt']}",
    ]
    for key, value in node["settings"].items():
        if key in _HIDDEN and not show_secrets:
            value = "********"
        lines.append(f"{key} = {value if value else '<empty>'}")
    lines.append(f"node.conn[0].address = {node['address']}")
    lines.append(f"node.conn[0].port = {node['port']}")
    lines.append("# END RECORD")
    return "\n".join(lines) + "\n"


# --- login and logout --------------------------------------------------------------


def _find_session(own: dict[str, Any], node: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (
            s
            for s in own["sessions"]
            if s["iqn"] == node["iqn"]
            and (s["address"], s["port"]) == (node["address"], node["port"])
        ),
        None,
    )


def _login(own: dict[str, Any], nodes: list[dict[str, Any]]) -> Result:
    out: list[str] = []
    err: list[str] = []
    code = OK
    for node in nodes:
        if _find_session(own, node) is not None:
            # 2.1.x checks the session count before it prints "Logging in to".
            err.append(f"{PROGRAM}: default: 1 session requested, but 1 already present.\n")
            code = code or ERR_SESS_EXISTS
            continue
        out.append(f"Logging in to {_iface_portal(node)}\n")
        failure = _login_failure(own, node)
        if failure:
            if failure == ERR_ISCSID_NOTCONN:
                err.append(f"{PROGRAM}: can not connect to iSCSI daemon (111)!\n")
            err.append(f"{PROGRAM}: Could not login to {_iface_portal(node)}.\n")
            err.append(f"{PROGRAM}: initiator reported error ({failure} - {_ERR_TEXT[failure]})\n")
            code = code or failure
            continue
        _attach(own, node)
        out.append(f"Login to {_iface_portal(node)} successful.\n")
    if code != OK:
        err.append(f"{PROGRAM}: Could not log into all portals\n")
    return code, "".join(out), "".join(err)


_ERR_TEXT = {
    ERR_TRANS_TIMEOUT: "connection timed out",
    ERR_FATAL_LOGIN: "encountered non-retryable iSCSI login failure",
    ERR_ISCSID_NOTCONN: "could not connect to iscsid",
    ERR_LOGIN_AUTH_FAILED: "iSCSI login failed due to authorization failure",
}


def _offered(own: dict[str, Any], node: dict[str, Any]) -> dict[str, Any] | None:
    targets = own["portals"].get(_portal_key(node["address"], node["port"]), [])
    return next((t for t in targets if t["iqn"] == node["iqn"]), None)


def _login_failure(own: dict[str, Any], node: dict[str, Any]) -> int:
    if not own["iscsid"]:
        return ERR_ISCSID_NOTCONN
    target = _offered(own, node)
    if target is None:
        return ERR_TRANS_TIMEOUT
    if not _visible(target, own["initiator_name"]):
        return ERR_FATAL_LOGIN  # the target answers "Target not found"
    chap = target.get("chap")
    if chap is not None:
        settings = node["settings"]
        if (
            settings["node.session.auth.authmethod"] != "CHAP"
            or settings["node.session.auth.username"] != chap["user"]
            or settings["node.session.auth.password"] != chap["password"]
        ):
            return ERR_LOGIN_AUTH_FAILED
    return OK


def _attach(own: dict[str, Any], node: dict[str, Any]) -> None:
    target = _offered(own, node)
    assert target is not None
    disks: dict[str, str] = {}
    for lun in target["luns"]:
        if lun["disk"]:
            disks[str(lun["lun"])] = _disk_name(own["next_disk"])
            own["next_disk"] += 1
    own["sessions"].append(
        {
            "sid": own["next_sid"],
            "iqn": node["iqn"],
            "address": node["address"],
            "port": node["port"],
            "tpgt": target["tpgt"],
            "host_no": own["next_host"],
            "luns": [lun["lun"] for lun in target["luns"]],
            "disks": disks,
            "udev_pending": own["udev_delay"],
            "chap_user": node["settings"]["node.session.auth.username"],
        }
    )
    own["next_sid"] += 1
    own["next_host"] += 1


def _disk_name(index: int) -> str:
    # sda is the host's own disk; iSCSI disks follow as sdb, sdc, ... sdz, sdaa, ...
    letters = ""
    n = index
    while True:
        letters = chr(ord("a") + n % 26) + letters
        n = n // 26 - 1
        if n < 0:
            return "sd" + letters


def _logout(own: dict[str, Any], opts: dict[str, list[str]]) -> Result:
    iqn = opts.get("-T", [None])[-1]
    portal_text = opts.get("-p", [None])[-1]
    portal = _split_portal(portal_text) if portal_text else None
    chosen = [
        s
        for s in own["sessions"]
        if (iqn is None or s["iqn"] == iqn) and (portal is None or s["address"] == portal[0])
    ]
    if not chosen:
        return ERR_NO_OBJS_FOUND, "", f"{PROGRAM}: No matching sessions found\n"
    out = []
    for s in chosen:
        where = f"[sid: {s['sid']}, target: {s['iqn']}, portal: {s['address']},{s['port']}]"
        out.append(f"Logging out of session {where}\n")
    for s in chosen:
        where = f"[sid: {s['sid']}, target: {s['iqn']}, portal: {s['address']},{s['port']}]"
        out.append(f"Logout of {where} successful.\n")
        own["sessions"].remove(s)
    return OK, "".join(out), ""


# --- sessions ------------------------------------------------------------------------


def _session(own: dict[str, Any], opts: dict[str, list[str]]) -> Result:
    if "-u" in opts:
        return _logout(own, {})
    sessions = own["sessions"]
    if not sessions:
        return ERR_NO_OBJS_FOUND, "", f"{PROGRAM}: No active sessions.\n"
    level_text = opts.get("-P", ["0"])[-1]
    if not level_text.isdigit():
        return ERR_INVAL, "", f"{PROGRAM}: Invalid info level {level_text}.\n"
    level = int(level_text)
    if level == 0:
        lines = [
            f"tcp: [{s['sid']}] {_flat(s['address'], s['port'], s['tpgt'])} {s['iqn']}"
            " (non-flash)\n"
            for s in sessions
        ]
        return OK, "".join(lines), ""
    if level > 3:
        return ERR_INVAL, "", f"{PROGRAM}: Invalid info level {level}. Try 0 - 3.\n"
    return OK, _session_tree(own, level), ""


def _session_tree(own: dict[str, Any], level: int) -> str:
    out = ["iSCSI Transport Class version 2.0-870\n", f"version {VERSION}\n"]
    for s in own["sessions"]:
        portal = f"{_portal_key(s['address'], s['port'])},{s['tpgt']}"
        out.append(f"Target: {s['iqn']} (non-flash)\n")
        out.append(f"\tCurrent Portal: {portal}\n\tPersistent Portal: {portal}\n")
        block = [
            "**********",
            "Interface:",
            "**********",
            "Iface Name: default",
            "Iface Transport: tcp",
            f"Iface Initiatorname: {own['initiator_name']}",
            f"Iface IPaddress: {own['iface_ip'] or '<empty>'}",
            "Iface HWaddress: default",
            "Iface Netdev: default",
            f"SID: {s['sid']}",
            "iSCSI Connection State: LOGGED IN",
            "iSCSI Session State: LOGGED_IN",
            "Internal iscsid Session State: NO CHANGE",
        ]
        if level >= 2:
            block += [
                "*********",
                "Timeouts:",
                "*********",
                "Recovery Timeout: 120",
                "Target Reset Timeout: 30",
                "LUN Reset Timeout: 30",
                "Abort Timeout: 15",
                "*****",
                "CHAP:",
                "*****",
                f"username: {s['chap_user'] or '<empty>'}",
                "password: ********",
                "username_in: <empty>",
                "password_in: ********",
                "************************",
                "Negotiated iSCSI params:",
                "************************",
                "HeaderDigest: None",
                "DataDigest: None",
                "MaxRecvDataSegmentLength: 262144",
                "MaxXmitDataSegmentLength: 8192",
                "FirstBurstLength: 65536",
                "MaxBurstLength: 262144",
                "ImmediateData: Yes",
                "InitialR2T: Yes",
                "MaxOutstandingR2T: 1",
            ]
        if level >= 3:
            block += [
                "************************",
                "Attached SCSI devices:",
                "************************",
                f"Host Number: {s['host_no']}\tState: running",
            ]
        out.extend(f"\t\t{line}\n" for line in block)
        if level >= 3:
            for lun in s["luns"]:
                out.append(f"\t\tscsi{s['host_no']} Channel 00 Id 0 Lun: {lun}\n")
                disk = s["disks"].get(str(lun))
                if disk:
                    out.append(f"\t\t\tAttached scsi disk {disk}\t\tState: running\n")
    return "".join(out)


# --- udev ------------------------------------------------------------------------------


def test_block(path: str, state: dict[str, Any]) -> bool:
    """``test -b PATH`` for an iSCSI disk: its by-path link or its ``/dev/sdX`` node.

    A new session's links appear only after ``udev_delay`` look-ups, like udev's.
    """
    own = _state(state)
    for session in own["sessions"]:
        for lun, disk in session["disks"].items():
            link = f"ip-{session['address']}:{session['port']}-iscsi-{session['iqn']}-lun-{lun}"
            if path == f"/dev/{disk}":
                return True
            if path == "/dev/disk/by-path/" + link:
                if session.get("udev_pending", 0) > 0:
                    session["udev_pending"] -= 1
                    return False
                return True
    return False
