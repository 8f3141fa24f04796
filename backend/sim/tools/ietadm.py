"""A fake IET ``ietadm`` (iSCSI Enterprise Target 1.4.20) and the ``/proc/net/iet`` it shows.

IET is unmaintained and its kernel module cannot load here. This fake keeps the
running configuration (what ietadm changes and a restart of ietd loses) in
``state["iet"]``; ``ietd.conf`` is an ordinary file the driver edits itself.

Behaviour follows ietadm.c and ietadm(8): getopt options ``--op --tid --sid --cid
--lun --params --user``; an unknown option prints getopt's message and ``Try `ietadm
--help'``, exit 255; a request ietd refuses prints ``ietd_request <line> <request>
<-errno>`` (the "code triple" of TOOL-FORMATS.md §2.3) and exits with the negative
errno, as ietadm's ``main`` returns it. ``/proc/net/iet/volume`` and ``session`` render as in
``tests/data/iet`` (newest target first, TAB indentation; :func:`render_proc_volume`,
:func:`render_proc_session`). :func:`login` lets a simulated initiator open a session.
"""

from __future__ import annotations

import errno
import getopt
from typing import Any

from backend.sim.tools import Result, device

__all__ = [
    "VERSION",
    "login",
    "new_state",
    "render_proc_session",
    "render_proc_volume",
    "run",
]

VERSION = "1.4.20.3"
PROGRAM = "ietadm"

_REQUEST_LINE = 203  # __LINE__ of the fprintf in ietd_request, as printed by 1.4.20
# enum ietadm_cmnd (usr/ietadm.h, 1.4.20)
C_TRGT_NEW, C_TRGT_DEL, C_TRGT_UPDATE, C_TRGT_SHOW = 0, 1, 2, 3
C_CONN_DEL = 10
C_LUNIT_NEW, C_LUNIT_DEL = 13, 14
C_ACCT_NEW, C_ACCT_DEL = 17, 18
C_SYS_DEL = 22

_TRY = f"Try `{PROGRAM} --help' for more information.\n"
_USAGE = f"""Usage: {PROGRAM} [OPTION]
iSCSI Enterprise Target Administration Utility.

  --op new --tid=[id] --params Name=[name]
                        add a new target with [id]. [id] must not be zero.
  --op delete --tid=[id]
                        delete specific target with [id]. The target must
                        have no active sessions.
  --op show --tid=[id]
                        show target parameters of target with [id].
  --op new --tid=[id] --lun=[lun] --params Path=[path]
                        add a new logical unit with [lun] to specific
                        target with [id]. The logical unit is offered
                        to the initiators. [path] must be block device files
                        (including LVM and RAID devices) or regular files.
  --op delete --tid=[id] --lun=[lun]
                        delete specific logical unit with [lun] that
                        the target with [id] has.
  --op delete --tid=[id] --sid=[sid] --cid=[cid]
                        delete specific connection with [cid] in a session
                        with [sid] that the target with [id] has.
                        If the session has no connections after
                        the operation, the session will be deleted
                        automatically.
  --op delete           stop all activity.
  --op update --tid=[id] --params=key1=value1,key2=value2,...
                        change iSCSI IET target parameters of specific
                        target with [id]. You can use parameters in ietd.conf
                        as a key.
  --op new --tid=[id] --user --params=[user]=[name],Password=[pass]
                        add a new account with [pass] for specific target.
                        [user] could be [IncomingUser] or [OutgoingUser].
                        If you don't specify a target (omit --tid option),
                        you add a new account for discovery sessions.
  --op delete --tid=[id] --user --params=[user]=[name]
                        delete specific account having [name] of specific
                        target. [user] could be [IncomingUser] or
                        [OutgoingUser].
                        If you don't specify a target (omit --tid option),
                        you delete the account for discovery sessions.
  --version             display version and exit
  --help                display this help and exit

Report bugs to <iscsitarget-devel@lists.sourceforge.net>.
"""

_TARGET_PARAMS = {
    "Wthreads": "8",
    "Type": "0",
    "QueuedCommands": "32",
    "NOPInterval": "0",
    "NOPTimeout": "0",
}


def new_state() -> dict[str, Any]:
    """ietd running with no targets (sids count like the kernel's, from a large base)."""
    return {"running": True, "targets": [], "next_sid": 281474997486080}


def _state(state: dict[str, Any]) -> dict[str, Any]:
    own: dict[str, Any] = state.setdefault("iet", {})
    for key, value in new_state().items():
        own.setdefault(key, value)
    return own


def _target(own: dict[str, Any], tid: int) -> dict[str, Any] | None:
    return next((t for t in own["targets"] if t["tid"] == tid), None)


def login(state: dict[str, Any], name: str, initiator: str, ip: str) -> int:
    """Open a session (one connection, cid 0) from ``initiator`` to target ``name``."""
    own = _state(state)
    target = next((t for t in own["targets"] if t["name"] == name), None)
    if target is None:
        raise ValueError(f"no target {name}")
    sid = int(own["next_sid"])
    own["next_sid"] = sid + (1 << 32)
    target["sessions"].insert(
        0,
        {
            "sid": sid,
            "initiator": initiator,
            "connections": [{"cid": 0, "ip": ip, "state": "active", "hd": "none", "dd": "none"}],
        },
    )
    return sid


# --- /proc/net/iet ------------------------------------------------------------------


def render_proc_volume(state: dict[str, Any]) -> str:
    lines = []
    for target in reversed(_state(state)["targets"]):  # the kernel lists newest first
        lines.append(f"tid:{target['tid']} name:{target['name']}\n")
        for lun in target["luns"]:
            lines.append(
                f"\tlun:{lun['lun']} state:0 iotype:{lun['type']} iomode:{lun['iomode']} "
                f"blocks:{lun['blocks']} blocksize:{lun['blocksize']} path:{lun['path']}\n"
            )
    return "".join(lines)


def render_proc_session(state: dict[str, Any]) -> str:
    lines = []
    for target in reversed(_state(state)["targets"]):
        lines.append(f"tid:{target['tid']} name:{target['name']}\n")
        for session in target["sessions"]:
            lines.append(f"\tsid:{session['sid']} initiator:{session['initiator']}\n")
            for conn in session["connections"]:
                lines.append(
                    f"\t\tcid:{conn['cid']} ip:{conn['ip']} state:{conn['state']} "
                    f"hd:{conn['hd']} dd:{conn['dd']}\n"
                )
    return "".join(lines)


# --- the command line -----------------------------------------------------------------


_SHORT_NAME = {
    "--op": "-o",
    "--tid": "-t",
    "--sid": "-s",
    "--cid": "-c",
    "--lun": "-l",
    "--params": "-p",
    "--user": "-u",
    "--version": "-v",
    "--help": "-h",
}


class _Failed(Exception):
    def __init__(self, request: int, err: int) -> None:
        self.request = request
        self.err = err


def run(argv: list[str], state: dict[str, Any]) -> Result:
    """Run ``ietadm`` with ``argv`` (``argv[0]`` is the program name)."""
    try:
        opts, rest = getopt.gnu_getopt(
            argv[1:],
            "o:t:s:c:l:p:uvh",
            ["op=", "tid=", "sid=", "cid=", "lun=", "params=", "user", "version", "help"],
        )
    except getopt.GetoptError as exc:
        if exc.opt and len(exc.opt) > 1:
            text = f"{PROGRAM}: unrecognized option '--{exc.opt}'\n"
        elif "requires argument" in exc.msg:
            text = f"{PROGRAM}: option requires an argument -- '{exc.opt}'\n"
        else:
            text = f"{PROGRAM}: invalid option -- '{exc.opt}'\n"
        return -1, "", text + _TRY
    given = {_SHORT_NAME.get(name, name): value for name, value in opts}
    if "-v" in given:
        return 0, f"{PROGRAM} version {VERSION}\n", ""
    if "-h" in given:
        return 0, _USAGE, ""
    op = given.get("-o")
    if op not in ("new", "delete", "update", "show"):
        return -errno.EINVAL, "", "You must specify the operation type\n"
    if rest:
        return -1, "", "unrecognized: " + "".join(rest) + "\n" + _TRY
    own = _state(state)
    try:
        return _dispatch(own, state, op, given)
    except _Failed as failed:
        line = f"ietd_request {_REQUEST_LINE} {failed.request} {failed.err}\n"
        return failed.err, "", line


def _number(text: str | None) -> int:
    try:
        return int(text or "0")
    except ValueError:
        return 0  # strtoul stops at the first non-digit


def _params(text: str | None) -> list[tuple[str, str]]:
    pairs = []
    for item in (text or "").split(","):
        key, sep, value = item.partition("=")
        if sep:
            pairs.append((key, value.lstrip()))
    return pairs


def _dispatch(own: dict[str, Any], state: dict[str, Any], op: str, given: dict[str, str]) -> Result:
    if not own["running"]:
        request = {"new": C_TRGT_NEW, "delete": C_TRGT_DEL}.get(op, C_TRGT_SHOW)
        raise _Failed(request, -errno.ECONNREFUSED)
    tid = _number(given.get("-t"))
    if "-u" in given:
        return _user(own, op, tid if "-t" in given else None, _params(given.get("-p")))
    if "-l" in given:
        return _lunit(own, state, op, tid, _number(given.get("-l")), _params(given.get("-p")))
    if "-c" in given and "-s" in given and "-t" in given:
        return _connection(own, op, tid, _number(given.get("-s")), _number(given.get("-c")))
    if "-t" in given:
        return _target_op(own, op, tid, given.get("-p"))
    if op == "delete":  # stop all activity
        for target in own["targets"]:
            target["sessions"] = []
        own["targets"] = []
        return 0, "", ""
    raise _Failed(C_SYS_DEL, -errno.EINVAL)


def _target_op(own: dict[str, Any], op: str, tid: int, params: str | None) -> Result:
    if op == "new":
        key, sep, name = (params or "").partition("=")
        if not sep or key != "Name" or not name:
            return -errno.EINVAL, "", ""  # ietadm refuses before asking ietd, silently
        if any(t["name"] == name for t in own["targets"]):
            raise _Failed(C_TRGT_NEW, -errno.EEXIST)
        if tid == 0:
            taken = {t["tid"] for t in own["targets"]}
            tid = next(n for n in range(1, len(taken) + 2) if n not in taken)
        elif _target(own, tid) is not None:
            raise _Failed(C_TRGT_NEW, -errno.EEXIST)
        own["targets"].append(
            {"tid": tid, "name": name, "luns": [], "users": [], "sessions": [], "params": {}}
        )
        return 0, "", ""
    target = _target(own, tid)
    if target is None:
        raise _Failed(
            {"delete": C_TRGT_DEL, "update": C_TRGT_UPDATE}.get(op, C_TRGT_SHOW), -errno.ENOENT
        )
    if op == "delete":
        if target["sessions"]:
            raise _Failed(C_TRGT_DEL, -errno.EBUSY)
        own["targets"].remove(target)
        return 0, "", ""
    if op == "update":
        target["params"].update(dict(_params(params)))
        return 0, "", ""
    shown = {**_TARGET_PARAMS, **target["params"]}
    return 0, "".join(f"{k}={v}\n" for k, v in shown.items()), ""


def _lunit(
    own: dict[str, Any],
    state: dict[str, Any],
    op: str,
    tid: int,
    lun: int,
    params: list[tuple[str, str]],
) -> Result:
    if op == "update":
        return -errno.EINVAL, "", "Unsupported.\n"
    target = _target(own, tid)
    request = C_LUNIT_NEW if op == "new" else C_LUNIT_DEL
    if target is None:
        raise _Failed(request, -errno.ENOENT)
    existing = next((x for x in target["luns"] if x["lun"] == lun), None)
    if op == "delete":
        if existing is None:
            raise _Failed(request, -errno.ENOENT)
        target["luns"].remove(existing)
        return 0, "", ""
    if op == "show":
        return 0, "", ""
    options = {k.lower(): v for k, v in params}
    path = options.get("path", "")
    iotype = options.get("type", "fileio").lower()
    found = device(state, path)
    if existing is not None:
        raise _Failed(request, -errno.EEXIST)
    if found is None or iotype not in ("fileio", "blockio", "nullio"):
        raise _Failed(request, -errno.EINVAL if found is not None else -errno.ENOENT)
    if iotype == "blockio" and not found["block"]:
        raise _Failed(request, -errno.EINVAL)  # blockio needs a block device
    target["luns"].append(
        {
            "lun": lun,
            "path": path,
            "type": iotype,
            "iomode": options.get("iomode", "wt" if iotype == "blockio" else "wb"),
            "blocks": int(found["size"]) // 512,
            "blocksize": 512,
        }
    )
    target["luns"].sort(key=lambda x: x["lun"])
    return 0, "", ""


def _user(own: dict[str, Any], op: str, tid: int | None, params: list[tuple[str, str]]) -> Result:
    if op in ("update", "show"):
        return -errno.EINVAL, "", "Unsupported.\n"
    direction = user = password = None
    for key, value in params:
        if key.lower() in ("incominguser", "outgoinguser"):
            direction, user = key.lower().removesuffix("user"), value
        elif key.lower() == "password":
            password = value
        else:
            return -errno.EINVAL, "", f"Unknown parameter {key}\n"
    if user is None or (op == "new" and password is None):
        # ietadm echoes the password here; the fake masks it (fakes end up in logs too).
        return (
            -errno.EINVAL,
            "",
            f"You need to specify a user and its password {password and '********'} {user}\n",
        )
    request = C_ACCT_NEW if op == "new" else C_ACCT_DEL
    if tid is None:
        users = own.setdefault("discovery_users", [])
    else:
        target = _target(own, tid)
        if target is None:
            raise _Failed(request, -errno.ENOENT)
        users = target["users"]
    found = next((u for u in users if u["user"] == user and u["dir"] == direction), None)
    if op == "delete":
        if found is None:
            raise _Failed(request, -errno.ENOENT)
        users.remove(found)
        return 0, "", ""
    if found is not None:
        raise _Failed(request, -errno.EEXIST)
    users.append({"dir": direction, "user": user, "password": password})
    return 0, "", ""


def _connection(own: dict[str, Any], op: str, tid: int, sid: int, cid: int) -> Result:
    if op != "delete":
        return -errno.EINVAL, "", "Unsupported.\n"
    target = _target(own, tid)
    session = next((s for s in target["sessions"] if s["sid"] == sid), None) if target else None
    conn = next((c for c in session["connections"] if c["cid"] == cid), None) if session else None
    if target is None or session is None or conn is None:
        raise _Failed(C_CONN_DEL, -errno.ENOENT)
    session["connections"].remove(conn)
    if not session["connections"]:
        target["sessions"].remove(session)
    return 0, "", ""
