"""A fake ``tgtadm`` (tgt 1.0.85) for the simulated storage node: a tgtd's targets in a dict.

The simulated lab plays tgt when lab.toml says ``driver = "tgt"``. The outputs, error
messages and exit codes are the real tgtadm's, from the captures in ``tests/data/tgt``
(the test compares them byte for byte): ``--op show --mode target`` lists every target
with its I_T nexus, LUNs (LUN 0 is tgt's controller), accounts and ACLs; errors are one
``tgtadm: ...`` line on stderr with exit 22, 107 when no tgtd listens on the control port.

State: ``state["tgt"] = {"control": N or None, "running": bool, "targets": [...],
"accounts": [...], "next_nexus": int}``. :func:`login` and :func:`logout` open and close
an I_T nexus for an initiator session (``backend/sim/commands/storage.py`` mirrors the
simulated iscsiadm's sessions with them).
"""

from __future__ import annotations

from typing import Any

from backend.sim.tools import Result, device

EINVAL = 22
ENOTCONN = 107

_SHORT = {
    "-C": "--control-port",
    "-L": "--lld",
    "-o": "--op",
    "-m": "--mode",
    "-t": "--tid",
    "-l": "--lun",
    "-T": "--targetname",
    "-b": "--backing-store",
    "-I": "--initiator-address",
    "-Q": "--initiator-name",
    "-u": "--user",
    "-p": "--password",
    "-n": "--name",
    "-v": "--value",
    "-E": "--bstype",
    "-f": "--bsoflags",
    "-O": "--outgoing",
    "-F": "--force",
}
_FLAGS = {"--outgoing", "--force"}


def new_state(control: int | None = None) -> dict[str, Any]:
    """A tgtd that runs with control port ``control`` (``tgtd -C N``), no targets."""
    return {"control": control, "running": True, "targets": [], "accounts": [], "next_nexus": 1}


def _tgt(state: dict[str, Any]) -> dict[str, Any]:
    found = state.get("tgt")
    if not isinstance(found, dict):
        found = state["tgt"] = new_state()
    return found


def _fail(message: str, code: int = EINVAL) -> Result:
    return code, "", f"tgtadm: {message}\n"


def _parse(argv: list[str]) -> dict[str, str] | None:
    opts: dict[str, str] = {}
    args = iter(argv[1:])
    for arg in args:
        name, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        name = _SHORT.get(name, name)
        if name in _FLAGS:
            opts[name] = "1"
            continue
        if not name.startswith("--"):
            return None
        value = inline if inline else next(args, None)
        if value is None:
            return None
        opts[name] = value
    return opts


def run(argv: list[str], state: dict[str, Any]) -> Result:
    opts = _parse(argv)
    if opts is None:
        return _fail("invalid request")
    tgt = _tgt(state)
    control = opts.get("--control-port")
    wanted = str(tgt.get("control") or 0)
    if not tgt.get("running", True) or (control or "0") != wanted:
        return _fail(
            "failed to send request hdr to tgt daemon, Transport endpoint is not connected",
            ENOTCONN,
        )
    op, mode = opts.get("--op"), opts.get("--mode")
    handler = _HANDLERS.get((op or "", mode or ""))
    if handler is None:
        return _fail("invalid request")
    return handler(opts, tgt, state)


def _find(tgt: dict[str, Any], opts: dict[str, str]) -> dict[str, Any] | None:
    tid = opts.get("--tid")
    targets: list[dict[str, Any]] = tgt["targets"]
    return next((t for t in targets if tid is not None and str(t["tid"]) == tid), None)


# -- show -------------------------------------------------------------------------------


def _show_target(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    if "--tid" in opts:
        if _find(tgt, opts) is None:
            return _fail("can't find the target")
        return 0, _PARAMS, ""
    return 0, "".join(render_target(t, tgt) for t in tgt["targets"]), ""


def render_target(target: dict[str, Any], tgt: dict[str, Any]) -> str:
    tid = int(target["tid"])
    lines = [
        f"Target {tid}: {target['name']}",
        "    System information:",
        "        Driver: iscsi",
        f"        State: {target.get('state', 'ready')}",
        "    I_T nexus information:",
    ]
    for nexus in target.get("nexus", []):
        lines += [
            f"        I_T nexus: {nexus['id']}",
            f"            Initiator: {nexus['initiator']} alias: none",
            "            Connection: 0",
            f"                IP Address: {nexus['ip']}",
        ]
    lines.append("    LUN information:")
    luns = [{"lun": 0, "path": None, "size": 0}, *target.get("luns", [])]
    for lun in luns:
        number = int(lun["lun"])
        disk = lun["path"] is not None
        lines += [
            f"        LUN: {number}",
            f"            Type: {'disk' if disk else 'controller'}",
            f"            SCSI ID: IET     {tid:04x}{number:04x}",
            f"            SCSI SN: beaf{tid}{number}",
            # to the nearest MB (64 MiB: 67 MB, 32 MiB: 34 MB)
            f"            Size: {(int(lun['size']) + 500_000) // 1_000_000} MB, "
            f"Block size: {512 if disk else 1}",
            "            Online: Yes",
            "            Removable media: No",
            "            Prevent removal: No",
            "            Readonly: No",
            "            SWP: No",
            "            Thin-provisioning: No",
            f"            Backing store type: {'rdwr' if disk else 'null'}",
            f"            Backing store path: {lun['path'] if disk else 'None'}",
            "            Backing store flags: ",
        ]
    lines.append("    Account information:")
    accounts = target.get("accounts", [])
    lines += [f"        {user}" for user, outgoing in accounts if not outgoing]
    lines += [f"        {user} (outgoing)" for user, outgoing in accounts if outgoing]
    lines.append("    ACL information:")
    # Addresses (-I) first, then initiator names (-Q): tgtd keeps them in two lists.
    lines += [f"        {acl}" for acl in target.get("acls", [])]
    lines += [f"        {name}" for name in target.get("names", [])]
    return "\n".join(lines) + "\n"


def _show_account(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    users = list(reversed(tgt["accounts"]))  # tgtd lists the newest first
    text = "Account list:\n" + "".join(f"    {a['user']}\n" for a in users)
    return 0, text, ""


# -- changes ----------------------------------------------------------------------------


def _new_target(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    tid, name = opts.get("--tid"), opts.get("--targetname")
    if tid is None or not tid.isdigit() or int(tid) < 1 or not name:
        return _fail("invalid request")
    if _find(tgt, opts) is not None or any(t["name"] == name for t in tgt["targets"]):
        return _fail("this target already exists")
    tgt["targets"].append(
        {"tid": int(tid), "name": name, "luns": [], "acls": [], "accounts": [], "nexus": []}
    )
    tgt["targets"].sort(key=lambda t: t["tid"])
    return 0, "", ""


def _new_lun(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    target = _find(tgt, opts)
    if target is None:
        return _fail("can't find the target")
    lun, path = opts.get("--lun"), opts.get("--backing-store")
    if lun is None or not lun.isdigit() or not path:
        return _fail("invalid request")
    if int(lun) == 0 or any(int(x["lun"]) == int(lun) for x in target["luns"]):
        return _fail("this logical unit number already exists")
    found = device(state, path)
    if found is None:
        return _fail("invalid request")  # tgtd cannot open the backing store
    target["luns"].append({"lun": int(lun), "path": path, "size": int(found["size"])})
    target["luns"].sort(key=lambda x: x["lun"])
    return 0, "", ""


def _bind_target(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    target = _find(tgt, opts)
    if target is None:
        return _fail("can't find the target")
    address, name = opts.get("--initiator-address"), opts.get("--initiator-name")
    if not address and not name:
        return _fail("invalid request")
    for key, value in (("acls", address), ("names", name)):
        entries = target.setdefault(key, [])
        if value and value not in entries:
            entries.append(value)
    return 0, "", ""


def _new_account(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    user, password = opts.get("--user"), opts.get("--password")
    if not user or not password:
        return _fail("invalid request")
    if any(a["user"] == user for a in tgt["accounts"]):
        return _fail("this account already exists")
    tgt["accounts"].append({"user": user, "password": password})
    return 0, "", ""


def _bind_account(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    target = _find(tgt, opts)
    if target is None:
        return _fail("can't find the target")
    user = opts.get("--user")
    if not any(a["user"] == user for a in tgt["accounts"]):
        return _fail("can't find the account")
    entry = [user, "--outgoing" in opts]
    if entry not in target["accounts"]:
        target["accounts"].append(entry)
    return 0, "", ""


def _update_target(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    target = _find(tgt, opts)
    if target is None:
        return _fail("can't find the target")
    if opts.get("--name") == "state" and opts.get("--value") in ("offline", "ready"):
        target["state"] = opts["--value"]
        return 0, "", ""
    return _fail("invalid request")


def _delete_target(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    target = _find(tgt, opts)
    if target is None:
        return _fail("can't find the target")
    if target["nexus"] and "--force" not in opts:
        return _fail("this target is still active")
    tgt["targets"].remove(target)
    return 0, "", ""


def _delete_account(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    user = opts.get("--user")
    if not any(a["user"] == user for a in tgt["accounts"]):
        return _fail("can't find the account")
    tgt["accounts"] = [a for a in tgt["accounts"] if a["user"] != user]
    for target in tgt["targets"]:
        target["accounts"] = [a for a in target["accounts"] if a[0] != user]
    return 0, "", ""


def _delete_system(opts: dict[str, str], tgt: dict[str, Any], state: dict[str, Any]) -> Result:
    if tgt["targets"]:
        return _fail("this target is still active")
    tgt["running"] = False  # tgtd exits
    return 0, "", ""


_HANDLERS = {
    ("show", "target"): _show_target,
    ("show", "account"): _show_account,
    ("new", "target"): _new_target,
    ("new", "logicalunit"): _new_lun,
    ("bind", "target"): _bind_target,
    ("new", "account"): _new_account,
    ("bind", "account"): _bind_account,
    ("update", "target"): _update_target,
    ("delete", "target"): _delete_target,
    ("delete", "account"): _delete_account,
    ("delete", "system"): _delete_system,
}

# ``--op show --mode target --tid N``: the target's iSCSI parameters (tgt 1.0.85's).
_PARAMS = """\
nop_interval=0
nop_count=0
MaxRecvDataSegmentLength=8192
HeaderDigest=None
DataDigest=None
InitialR2T=Yes
MaxOutstandingR2T=1
ImmediateData=Yes
FirstBurstLength=65536
MaxBurstLength=262144
DataPDUInOrder=Yes
DataSequenceInOrder=Yes
ErrorRecoveryLevel=0
IFMarker=No
OFMarker=No
DefaultTime2Wait=2
DefaultTime2Retain=20
OFMarkInt=Reject
IFMarkInt=Reject
MaxConnections=1
RDMAExtensions=Yes
TargetRecvDataSegmentLength=262144
InitiatorRecvDataSegmentLength=262144
MaxOutstandingUnexpectedPDUs=0
MaxXmitDataSegmentLength=8192
MaxQueueCmd=128
"""


# -- the target's side of an initiator's session ------------------------------------------


def login(state: dict[str, Any], iqn: str, initiator: str, ip: str) -> int:
    """Open an I_T nexus on target ``iqn`` (ValueError: no such target; PermissionError:
    its ACLs do not let ``initiator`` at ``ip`` in)."""
    tgt = _tgt(state)
    target = next((t for t in tgt["targets"] if t["name"] == iqn), None)
    if target is None or not tgt.get("running", True):
        raise ValueError(f"no target {iqn}")
    acls = target.get("acls", [])
    if "ALL" not in acls and ip not in acls and initiator not in target.get("names", []):
        raise PermissionError(f"{initiator} at {ip} is not allowed on {iqn}")
    nexus = int(tgt.get("next_nexus", 1))
    tgt["next_nexus"] = nexus + 1
    target["nexus"].append({"id": nexus, "initiator": initiator, "ip": ip})
    return nexus


def logout(state: dict[str, Any], nexus: int) -> None:
    for target in _tgt(state)["targets"]:
        target["nexus"] = [n for n in target["nexus"] if n["id"] != nexus]


def exported(state: dict[str, Any]) -> list[tuple[str, list[int], tuple[str, str] | None]]:
    """(iqn, LUNs, incoming CHAP account) of every target initiators may log in to."""
    tgt = state.get("tgt")
    if not isinstance(tgt, dict) or not tgt.get("running", True):
        return []
    passwords = {a["user"]: a["password"] for a in tgt.get("accounts", [])}
    found = []
    for target in tgt.get("targets", []):
        open_to = target.get("acls") or target.get("names")
        if not open_to or target.get("state", "ready") != "ready":
            continue
        incoming = [u for u, outgoing in target.get("accounts", []) if not outgoing]
        chap = (incoming[0], passwords.get(incoming[0], "")) if incoming else None
        found.append((target["name"], [int(x["lun"]) for x in target["luns"]], chap))
    return found
