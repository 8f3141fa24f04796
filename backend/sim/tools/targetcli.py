"""A fake LIO ``targetcli`` (targetcli-fb 2.1.5x) in one-shot mode: ``targetcli PATH CMD ARGS``.

LIO needs the kernel's target configfs, which this machine lacks. This fake keeps the
configuration in ``state["lio"]`` and answers as targetcli-fb does (sources:
open-iscsi/targetcli-fb ``targetcli_shell.py``, ``ui_root.py``, ``ui_target.py``,
``ui_backstore.py``, configshell-fb's ``node.py``):

* The words after the program are joined with spaces and read as one shell line, as
  targetcli does; a first word starting with ``/`` is the node path.
* Messages (``Created target ...``) go to stdout; a failed command prints its error to
  stderr and exits 1; ``--help`` prints the usage to stderr and exits 255.
* ``ls`` draws configshell's tree (``o- name .... [summary]``) as in
  ``tests/data/lio``; ``sessions`` lists sessions of explicit ACLs only (rtslib walks
  the node ACLs in configfs); demo-mode (``generate_node_acls=1``) sessions show in the
  TPG's ``dynamic_sessions`` configfs file instead (:func:`configfs_files`).
* One-shot mode does not save: ``saveconfig`` copies the running config to ``saved``.

:func:`login` and :func:`logout` let a simulated initiator open and close sessions.
"""

from __future__ import annotations

import copy
from typing import Any

from backend.sim.tools import Result, device

__all__ = [
    "VERSION",
    "configfs_files",
    "login",
    "logout",
    "new_state",
    "render_tree",
    "run",
]

VERSION = "2.1.53"
PROGRAM = "targetcli"

TREE_WIDTH = 100
_DEFAULT_TPG_ATTRIBUTES = {
    "authentication": 0,
    "cache_dynamic_acls": 0,
    "default_cmdsn_depth": 64,
    "default_erl": 0,
    "demo_mode_discovery": 1,
    "demo_mode_write_protect": 1,
    "generate_node_acls": 0,
    "login_timeout": 15,
    "netif_timeout": 2,
    "prod_mode_write_protect": 0,
    "t10_pi": 0,
    "tpg_enabled_sendtargets": 1,
}
_AUTH_PARAMS = ("userid", "password", "mutual_userid", "mutual_password")


class _Error(Exception):
    """An ExecutionError / RTSLibError: printed to stderr, exit 1."""


def new_state() -> dict[str, Any]:
    return {"storage_objects": [], "targets": [], "sessions": [], "next_sid": 1, "saved": None}


def _state(state: dict[str, Any]) -> dict[str, Any]:
    own: dict[str, Any] = state.setdefault("lio", {})
    for key, value in new_state().items():
        own.setdefault(key, value)
    return own


# --- simulated initiators --------------------------------------------------------------


def login(state: dict[str, Any], wwn: str, initiator: str, address: str) -> int:
    """Open a session from ``initiator`` to target ``wwn`` (TPG 1); returns its sid.

    Refused like LIO refuses a login: no such target, TPG disabled, or the initiator has
    no ACL and the TPG is not in demo mode.
    """
    own = _state(state)
    target = _target(own, wwn)
    if target is None:
        raise ValueError(f"no target {wwn}")
    tpg = target["tpgs"][0]
    explicit = any(acl["wwn"] == initiator for acl in tpg["acls"])
    if not tpg["enable"] or not (explicit or tpg["attributes"]["generate_node_acls"]):
        raise PermissionError(f"{initiator} may not log in to {wwn}")
    sid = int(own["next_sid"])
    own["next_sid"] = sid + 1
    own["sessions"].append(
        {
            "sid": sid,
            "target": wwn,
            "tpg": tpg["tag"],
            "initiator": initiator,
            "alias": initiator.rsplit(":", 1)[-1],
            "address": address,
            "dynamic": not explicit,
        }
    )
    return sid


def logout(state: dict[str, Any], sid: int) -> None:
    own = _state(state)
    own["sessions"] = [s for s in own["sessions"] if s["sid"] != sid]


# --- lookups ----------------------------------------------------------------------------


def _target(own: dict[str, Any], wwn: str) -> dict[str, Any] | None:
    return next((t for t in own["targets"] if t["wwn"] == wwn), None)


def _storage_object(own: dict[str, Any], plugin: str, name: str) -> dict[str, Any] | None:
    return next(
        (s for s in own["storage_objects"] if s["plugin"] == plugin and s["name"] == name), None
    )


def _so_in_use(own: dict[str, Any], so: dict[str, Any]) -> bool:
    return any(
        lun["plugin"] == so["plugin"] and lun["name"] == so["name"]
        for target in own["targets"]
        for tpg in target["tpgs"]
        for lun in tpg["luns"]
    )


def _bytes_to_human(size: int) -> str:
    # targetcli's ui_backstore.bytes_to_human
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024.0
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            return f"{value:3.1f}{unit}"
        value /= 1024.0
    return f"{value:3.1f}PiB"


def _human_to_bytes(text: str) -> int:
    units = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = text.strip()
    suffix = value.lstrip("0123456789.")
    number = value[: len(value) - len(suffix)]
    unit = suffix.upper().removesuffix("B") if suffix.upper() not in ("B", "") else ""
    if not number or unit not in units:
        raise _Error(f"Invalid size: {text}")
    return int(float(number) * units[unit])


# --- the tree -------------------------------------------------------------------------

_Tree = tuple[str, str, list[Any]]  # (name, summary, children)


def _tpg_summary(tpg: dict[str, Any]) -> str:
    if not tpg["enable"]:
        return "disabled"
    attrs = tpg["attributes"]
    words = ["gen-acls" if attrs["generate_node_acls"] else "no-gen-acls"]
    if not attrs["authentication"]:
        words.append("no-auth")
    elif not attrs["generate_node_acls"]:
        words.append("auth per-acl")
    else:
        words += ["tpg-auth", "mutual auth" if tpg["auth"].get("mutual_userid") else "1-way auth"]
    return ", ".join(words)


def _alua() -> _Tree:
    return (
        "alua",
        "ALUA Groups: 1",
        [("default_tg_pt_gp", "ALUA state: Active/optimized", [])],
    )


def _so_tree(own: dict[str, Any], so: dict[str, Any]) -> _Tree:
    status = "activated" if _so_in_use(own, so) else "deactivated"
    cache = "write-back" if so["write_back"] else "write-thru"
    summary = f"{so['dev']} ({_bytes_to_human(so['size'])}) {cache} {status}"
    return (so["name"], summary, [_alua()])


def _tpg_tree(own: dict[str, Any], tpg: dict[str, Any]) -> _Tree:
    def lun_line(lun: dict[str, Any]) -> _Tree:
        so = _storage_object(own, lun["plugin"], lun["name"])
        path = f" ({so['dev']})" if so is not None else ""
        return (f"lun{lun['lun']}", f"{lun['plugin']}/{lun['name']}{path} (default_tg_pt_gp)", [])

    def acl_line(acl: dict[str, Any]) -> _Tree:
        mapped: list[_Tree] = []
        for m in acl["mapped_luns"]:
            tpg_lun = next((x for x in tpg["luns"] if x["lun"] == m["tpg_lun"]), None)
            if tpg_lun is None:
                summary = "BROKEN LUN LINK"
            else:
                mode = "ro" if m["write_protect"] else "rw"
                summary = f"lun{tpg_lun['lun']} {tpg_lun['plugin']}/{tpg_lun['name']} ({mode})"
            mapped.append((f"mapped_lun{m['mapped_lun']}", summary, []))
        words = []
        if tpg["attributes"]["authentication"]:
            if tpg["attributes"]["generate_node_acls"]:
                words.append("auth via tpg")
            else:
                words.append("mutual auth" if acl["auth"].get("mutual_userid") else "1-way auth")
        words.append(f"Mapped LUNs: {len(mapped)}")
        return (acl["wwn"], ", ".join(words), mapped)

    luns = sorted(tpg["luns"], key=lambda x: int(x["lun"]))
    acls = sorted(tpg["acls"], key=lambda x: str(x["wwn"]))
    portals: list[_Tree] = [(_portal_name(p), "OK", []) for p in tpg["portals"]]
    return (
        f"tpg{tpg['tag']}",
        _tpg_summary(tpg),
        [
            ("acls", f"ACLs: {len(acls)}", [acl_line(a) for a in acls]),
            ("luns", f"LUNs: {len(luns)}", [lun_line(x) for x in luns]),
            ("portals", f"Portals: {len(portals)}", portals),
        ],
    )


def _portal_name(portal: dict[str, Any]) -> str:
    ip = str(portal["ip"])
    return f"[{ip}]:{portal['port']}" if ":" in ip else f"{ip}:{portal['port']}"


def _backstores_tree(own: dict[str, Any]) -> _Tree:
    groups = []
    for plugin in ("block", "fileio", "pscsi", "ramdisk"):
        objects = sorted(
            (s for s in own["storage_objects"] if s["plugin"] == plugin), key=lambda s: s["name"]
        )
        children = [_so_tree(own, so) for so in objects]
        groups.append((plugin, f"Storage Objects: {len(children)}", children))
    return ("backstores", "...", groups)


def _iscsi_tree(own: dict[str, Any]) -> _Tree:
    targets = sorted(own["targets"], key=lambda t: str(t["wwn"]))
    children = [
        (t["wwn"], f"TPGs: {len(t['tpgs'])}", [_tpg_tree(own, tpg) for tpg in t["tpgs"]])
        for t in targets
    ]
    return ("iscsi", f"Targets: {len(children)}", children)


def _root_tree(own: dict[str, Any]) -> _Tree:
    return (
        "/",
        "...",
        [
            _backstores_tree(own),
            _iscsi_tree(own),
            ("loopback", "Targets: 0", []),
            ("vhost", "Targets: 0", []),
        ],
    )


def render_tree(tree: _Tree, width: int = TREE_WIDTH) -> str:
    """configshell's ``ls``: dots pad each line to ``width``; none when it is too long."""
    lines: list[str] = []

    def walk(node: _Tree, prefix: str, child_prefix: str) -> None:
        name, summary, children = node
        head = f"{prefix}o- {name} "
        tail = f"[{summary}]"
        dots = width - len(head) - len(tail) - 1
        lines.append(head + ("." * dots + " " if dots > 0 else " ") + tail)
        for i, child in enumerate(children):
            last = i == len(children) - 1
            walk(child, child_prefix, child_prefix + ("  " if last else "| "))

    walk(tree, "", "  ")
    return "\n".join(lines) + "\n"


def _subtree(own: dict[str, Any], path: list[str]) -> _Tree:
    node = _root_tree(own)
    for part in path:
        found = next((c for c in node[2] if c[0] == part), None)
        if found is None:
            raise _Error(f"No such path /{'/'.join(path)}")
        node = found
    return node


# --- configfs -----------------------------------------------------------------------------


def configfs_files(state: dict[str, Any]) -> dict[str, str]:
    """The configfs files a driver may read, relative to ``/sys/kernel/config/target``.

    Only ``iscsi/<wwn>/tpgt_<n>/dynamic_sessions`` (one initiator name a line, the
    kernel's ``target_show_dynamic_sessions``): the demo-mode sessions targetcli does
    not list.
    """
    own = _state(state)
    files: dict[str, str] = {}
    for target in own["targets"]:
        for tpg in target["tpgs"]:
            names = [
                s["initiator"]
                for s in own["sessions"]
                if s["target"] == target["wwn"] and s["tpg"] == tpg["tag"] and s["dynamic"]
            ]
            key = f"iscsi/{target['wwn']}/tpgt_{tpg['tag']}/dynamic_sessions"
            files[key] = "".join(f"{n}\n" for n in names)
    return files


# --- the command line ---------------------------------------------------------------


def _usage() -> str:
    return (
        f"Usage: {PROGRAM} [--version|--help|CMD|--disable-daemon]\n"
        "  --version\t\tPrint version\n"
        "  --help\t\tPrint this information\n"
        "  CMD\t\t\tRun targetcli shell command and exit\n"
        "  <nothing>\t\tEnter configuration shell\n"
        "  --disable-daemon\tTurn-off the global auto use daemon flag\n"
        "See man page for more information.\n"
    )


def run(argv: list[str], state: dict[str, Any]) -> Result:
    """Run ``targetcli`` with ``argv`` (``argv[0]`` is the program name)."""
    args = argv[1:]
    if args and args[0] in ("help", "--help", "-h"):
        return -1, "", _usage()
    if args and args[0] in ("version", "--version", "-v"):
        return 0, "", f"{PROGRAM} version {VERSION}\n"
    if not args:
        # The interactive shell: its banner, then commands from standard input, which
        # is empty here (no terminal over plain exec), so it ends at once.
        banner = (
            f"targetcli shell version {VERSION}\n"
            "Copyright 2011-2013 by Datera, Inc and others.\n"
            "For help on commands, type 'help'.\n\n"
        )
        return 0, banner, ""
    words = " ".join(args).split()  # targetcli joins its arguments into one line
    path = "/"
    if words and words[0].startswith("/"):
        path = words.pop(0)
    if not words:
        words = ["cd"]
    command, params = words[0], words[1:]
    own = _state(state)
    out: list[str] = []
    try:
        _execute(own, state, path, command, params, out)
    except _Error as exc:
        return 1, "".join(out), f"{exc}\n"
    return 0, "".join(out), ""


def _split_params(params: list[str]) -> tuple[list[str], dict[str, str]]:
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for word in params:
        key, sep, value = word.partition("=")
        if sep and key.isidentifier():
            keywords[key] = value
        else:
            positional.append(word)
    return positional, keywords


def _bind(
    names: list[str], params: list[str], required: int, command: str
) -> dict[str, str | None]:
    """Map positional and key=value words onto a command's parameter names."""
    positional, keywords = _split_params(params)
    if len(positional) > len(names):
        raise _Error(f"Too many parameters for command {command}")
    bound: dict[str, str | None] = dict.fromkeys(names)
    for name, value in zip(names, positional, strict=False):
        bound[name] = value
    for key, value in keywords.items():
        if key not in bound:
            raise _Error(f"Unexpected keyword parameter '{key}'.")
        bound[key] = value
    missing = [n for n in names[:required] if bound[n] is None]
    if missing:
        raise _Error(f"Missing required parameters {', '.join(missing)}")
    return bound


def _execute(
    own: dict[str, Any],
    host: dict[str, Any],
    path: str,
    command: str,
    params: list[str],
    out: list[str],
) -> None:
    parts = [p for p in path.split("/") if p]
    if command == "ls":
        args = _bind(["path", "depth"], params, 0, command)
        sub = parts + [p for p in (args["path"] or "").split("/") if p]
        out.append(render_tree(_subtree(own, sub)))
        return
    if not parts:
        _root_command(own, command, params, out)
        return
    _subtree(own, parts)  # "No such path" before "Command not found"
    if parts[0] == "backstores" and len(parts) == 2:
        _backstore_command(own, host, parts[1], command, params, out)
    elif parts == ["iscsi"]:
        _iscsi_command(own, command, params, out)
    elif parts[0] == "iscsi" and len(parts) == 3:
        _tpg_command(own, parts[1], parts[2], command, params, out)
    elif parts[0] == "iscsi" and len(parts) == 4:
        _group_command(own, parts[1], parts[2], parts[3], command, params, out)
    else:
        raise _Error(f"Command not found {command}")


def _root_command(own: dict[str, Any], command: str, params: list[str], out: list[str]) -> None:
    if command == "saveconfig":
        _bind(["savefile"], params, 0, command)
        own["saved"] = copy.deepcopy(
            {"storage_objects": own["storage_objects"], "targets": own["targets"]}
        )
        out.append("Configuration saved to /etc/target/saveconfig.json\n")
    elif command == "sessions":
        args = _bind(["action", "sid"], params, 0, command)
        _sessions(own, args["action"] or "list", args["sid"], out)
    elif command == "clearconfig":
        args = _bind(["confirm"], params, 0, command)
        if (args["confirm"] or "").lower() not in ("true", "1", "yes"):
            raise _Error("As a precaution, confirm=True needs to be set")
        own["targets"], own["storage_objects"], own["sessions"] = [], [], []
        out.append("All configuration cleared\n")
    elif command == "version":
        out.append(f"targetcli version {VERSION}\n")
    else:
        raise _Error(f"Command not found {command}")


def _sessions(own: dict[str, Any], action: str, sid: str | None, out: list[str]) -> None:
    if action not in ("list", "detail"):
        raise _Error("action must be one of: list, detail")
    if sid is not None and not sid.isdigit():
        raise _Error(f"sid must be a number, '{sid}' given")
    shown = [s for s in own["sessions"] if not s["dynamic"]]
    if sid is not None:
        shown = [s for s in shown if s["sid"] == int(sid)]
        if not shown:
            raise _Error(f"no session found with sid {int(sid)}")
    if not shown:
        out.append("(no open sessions)\n")
        return
    for s in shown:
        out.append(f"alias: {s['alias']}\tsid: {s['sid']} type: Normal session-state: LOGGED_IN\n")
        if action != "detail":
            continue
        target = _target(own, s["target"])
        tpg = target["tpgs"][0] if target else None
        acl = next((a for a in tpg["acls"] if a["wwn"] == s["initiator"]), None) if tpg else None
        authenticated = bool(acl and acl["auth"].get("mutual_userid"))
        auth = " (authenticated)" if authenticated else " (NOT AUTHENTICATED)"
        out.append(f"    name: {s['initiator']}{auth}\n")
        for m in acl["mapped_luns"] if acl else []:
            lun = next((x for x in tpg["luns"] if x["lun"] == m["tpg_lun"]), None) if tpg else None
            if lun is not None:
                mode = "r" if m["write_protect"] else "rw"
                out.append(
                    f"    mapped-lun: {m['mapped_lun']} backstore: {lun['plugin']}/{lun['name']}"
                    f" mode: {mode}\n"
                )
        out.append(f"    address: {s['address']} (TCP)  cid: 0 connection-state: LOGGED_IN\n")


def _backstore_command(
    own: dict[str, Any],
    host: dict[str, Any],
    plugin: str,
    command: str,
    params: list[str],
    out: list[str],
) -> None:
    if command == "delete":
        name = _bind(["name"], params, 1, command)["name"]
        assert name is not None
        so = _storage_object(own, plugin, name)
        if so is None:
            raise _Error(f"No storage object named {name}.")
        for target in own["targets"]:
            for tpg in target["tpgs"]:
                tpg["luns"] = [
                    x for x in tpg["luns"] if not (x["plugin"] == plugin and x["name"] == name)
                ]
        own["storage_objects"].remove(so)
        out.append(f"Deleted storage object {name}.\n")
        return
    if command != "create":
        raise _Error(f"Command not found {command}")
    if plugin == "block":
        args = _bind(["name", "dev", "readonly", "wwn"], params, 2, command)
        name, dev = str(args["name"]), str(args["dev"])
        found = device(host, dev)
        if found is None or not found["block"]:
            raise _Error(f"Device {dev} is not a TYPE_DISK block device")
        _new_so(own, plugin, name, dev, int(found["size"]), write_back=False)
        out.append(f"Created block storage object {name} using {dev}.\n")
    elif plugin == "fileio":
        args = _bind(
            ["name", "file_or_dev", "size", "write_back", "sparse", "wwn"], params, 2, command
        )
        name, path = str(args["name"]), str(args["file_or_dev"])
        for so in own["storage_objects"]:
            if so["dev"] == path:
                raise _Error(f"storage object for {path} already exists: {so['name']}")
        found = device(host, path)
        if found is not None and found["block"]:
            out.append("Note: block backstore preferred for best results\n")
            size = int(found["size"])
        elif found is not None:
            size = int(found["size"])
            if args["size"]:
                out.append(f"{path} exists, using its size ({size} bytes) instead\n")
        else:
            if not args["size"]:
                raise _Error("Attempting to create file for new fileio backstore, need a size")
            size = _human_to_bytes(args["size"])
            host.setdefault("devices", {})[path] = {"size": size, "block": False}
        write_back = (args["write_back"] or "true").lower() in ("true", "1", "yes")
        _new_so(own, plugin, name, path, size, write_back=write_back)
        out.append(f"Created fileio {name} with size {size}\n")
    else:
        raise _Error(f"Command not found {command}")


def _new_so(
    own: dict[str, Any], plugin: str, name: str, dev: str, size: int, *, write_back: bool
) -> None:
    if _storage_object(own, plugin, name) is not None:
        raise _Error(f"Storage object {plugin}/{name} exists")
    own["storage_objects"].append(
        {"plugin": plugin, "name": name, "dev": dev, "size": size, "write_back": write_back}
    )


def _iscsi_command(own: dict[str, Any], command: str, params: list[str], out: list[str]) -> None:
    if command == "create":
        wwn = _bind(["wwn"], params, 1, command)["wwn"]
        assert wwn is not None
        if _target(own, wwn) is not None:
            raise _Error("This Target already exists in configFS")
        own["targets"].append(
            {
                "wwn": wwn,
                "tpgs": [
                    {
                        "tag": 1,
                        "enable": True,
                        "attributes": dict(_DEFAULT_TPG_ATTRIBUTES),
                        "auth": dict.fromkeys(_AUTH_PARAMS, ""),
                        "luns": [],
                        "acls": [],
                        "portals": [{"ip": "0.0.0.0", "port": 3260}],
                    }
                ],
            }
        )
        out.append(
            f"Created target {wwn}.\nCreated TPG 1.\nGlobal pref auto_add_default_portal=true\n"
            "Created default portal listening on all IPs (0.0.0.0), port 3260.\n"
        )
    elif command == "delete":
        wwn = _bind(["wwn"], params, 1, command)["wwn"]
        target = _target(own, str(wwn))
        if target is None:
            raise _Error(f"No such Target in configfs: /sys/kernel/config/target/iscsi/{wwn}")
        own["targets"].remove(target)
        own["sessions"] = [s for s in own["sessions"] if s["target"] != wwn]
        out.append(f"Deleted Target {wwn}.\n")
    else:
        raise _Error(f"Command not found {command}")


def _tpg(own: dict[str, Any], wwn: str, tag: str) -> dict[str, Any]:
    target = _target(own, wwn)
    tpgs: list[dict[str, Any]] = target["tpgs"] if target else []
    tpg = next((t for t in tpgs if f"tpg{t['tag']}" == tag), None)
    if tpg is None:
        raise _Error(f"No such path /iscsi/{wwn}/{tag}")
    return tpg


def _tpg_command(
    own: dict[str, Any], wwn: str, tag: str, command: str, params: list[str], out: list[str]
) -> None:
    tpg = _tpg(own, wwn, tag)
    if command in ("set", "get"):
        if not params:
            out.append("AVAILABLE CONFIGURATION GROUPS\n==============================\n")
            out.append("global auth parameter attribute\n")
            return
        group, rest = params[0], params[1:]
        if group not in ("attribute", "auth"):
            raise _Error(f"Unknown configuration group: {group}")
        values: dict[str, Any] = tpg["attributes"] if group == "attribute" else tpg["auth"]
        if command == "get":
            for name in rest:
                if name not in values:
                    raise _Error(f"No parameter '{name}' in group '{group}'.")
                out.append(f"{name}={values[name]} \n")
            return
        _, keywords = _split_params(rest)
        for name, value in keywords.items():
            if name not in values:
                raise _Error(f"Unknown parameter {name} in group '{group}'.")
            if group == "attribute":
                if not value.isdigit():
                    raise _Error(f"Not setting {name}! Syntax error, '{value}' is not a NUMBER.")
                values[name] = int(value)
            else:
                values[name] = value
            out.append(f"Parameter {name} is now '{values[name]}'.\n")
    elif command == "enable":
        out.append(
            "The TPGT is already enabled.\n" if tpg["enable"] else "The TPGT has been enabled.\n"
        )
        tpg["enable"] = True
    elif command == "disable":
        if tpg["enable"]:
            own["sessions"] = [s for s in own["sessions"] if s["target"] != wwn]
        out.append(
            "The TPGT has been disabled.\n" if tpg["enable"] else "The TPGT is already disabled.\n"
        )
        tpg["enable"] = False
    else:
        raise _Error(f"Command not found {command}")


def _group_command(
    own: dict[str, Any],
    wwn: str,
    tag: str,
    group: str,
    command: str,
    params: list[str],
    out: list[str],
) -> None:
    tpg = _tpg(own, wwn, tag)
    if group == "luns":
        _luns_command(own, tpg, command, params, out)
    elif group == "acls":
        _acls_command(own, tpg, command, params, out)
    elif group == "portals":
        _portals_command(tpg, command, params, out)
    else:
        raise _Error(f"Command not found {command}")


def _luns_command(
    own: dict[str, Any], tpg: dict[str, Any], command: str, params: list[str], out: list[str]
) -> None:
    if command == "delete":
        lun_text = str(_bind(["lun"], params, 1, command)["lun"]).lower().removeprefix("lun")
        lun = next((x for x in tpg["luns"] if str(x["lun"]) == lun_text), None)
        if lun is None:
            raise _Error("Invalid LUN")
        tpg["luns"].remove(lun)
        for acl in tpg["acls"]:
            acl["mapped_luns"] = [m for m in acl["mapped_luns"] if m["tpg_lun"] != lun["lun"]]
        out.append(f"Deleted LUN {lun_text}.\n")
        return
    if command != "create":
        raise _Error(f"Command not found {command}")
    args = _bind(["storage_object", "lun", "add_mapped_luns"], params, 1, command)
    so_path = str(args["storage_object"])
    pieces = [p for p in so_path.split("/") if p]
    so = None
    if len(pieces) == 3 and pieces[0] == "backstores":
        so = _storage_object(own, pieces[1], pieces[2])
    if so is None:
        raise _Error("storage object or path not valid")
    if any(x["plugin"] == so["plugin"] and x["name"] == so["name"] for x in tpg["luns"]):
        raise _Error(f"lun for storage object {so['plugin']}/{so['name']} already exists")
    lun_text = (args["lun"] or "").lower().removeprefix("lun")
    taken = {int(x["lun"]) for x in tpg["luns"]}
    if lun_text:
        if not lun_text.isdigit():
            raise _Error(f"Invalid LUN: {args['lun']}")
        number = int(lun_text)
        if number in taken:
            raise _Error("This LUN already exists in configFS")
    else:
        number = next(n for n in range(len(taken) + 1) if n not in taken)
    tpg["luns"].append({"lun": number, "plugin": so["plugin"], "name": so["name"]})
    out.append(f"Created LUN {number}.\n")
    add = (args["add_mapped_luns"] or "true").lower() in ("true", "1", "yes")
    if add:
        for acl in tpg["acls"]:
            existing = {int(m["mapped_lun"]) for m in acl["mapped_luns"]}
            mapped = number if lun_text else 0
            while mapped in existing:
                mapped += 1
            acl["mapped_luns"].append(
                {"mapped_lun": mapped, "tpg_lun": number, "write_protect": False}
            )
            out.append(f"Created LUN {number}->{mapped} mapping in node ACL {acl['wwn']}\n")


def _acls_command(
    own: dict[str, Any], tpg: dict[str, Any], command: str, params: list[str], out: list[str]
) -> None:
    if command == "create":
        args = _bind(["wwn", "add_mapped_luns"], params, 1, command)
        wwn = str(args["wwn"])
        if any(a["wwn"] == wwn for a in tpg["acls"]):
            raise _Error("This NodeACL already exists in configFS")
        acl: dict[str, Any] = {
            "wwn": wwn,
            "mapped_luns": [],
            "auth": dict.fromkeys(_AUTH_PARAMS, ""),
        }
        tpg["acls"].append(acl)
        out.append(f"Created Node ACL for {wwn}\n")
        if (args["add_mapped_luns"] or "true").lower() in ("true", "1", "yes"):
            for lun in sorted(tpg["luns"], key=lambda x: int(x["lun"])):
                acl["mapped_luns"].append(
                    {"mapped_lun": lun["lun"], "tpg_lun": lun["lun"], "write_protect": False}
                )
                out.append(f"Created mapped LUN {lun['lun']}.\n")
    elif command == "delete":
        wwn = str(_bind(["wwn"], params, 1, command)["wwn"])
        acl_found = next((a for a in tpg["acls"] if a["wwn"] == wwn), None)
        if acl_found is None:
            raise _Error(f"No such NodeACL in configfs: {wwn}")
        tpg["acls"].remove(acl_found)
        own["sessions"] = [s for s in own["sessions"] if s["initiator"] != wwn or s["dynamic"]]
        out.append(f"Deleted Node ACL {wwn}.\n")
    else:
        raise _Error(f"Command not found {command}")


def _portals_command(tpg: dict[str, Any], command: str, params: list[str], out: list[str]) -> None:
    if command == "create":
        args = _bind(["ip_address", "ip_port"], params, 0, command)
        port_text = args["ip_port"] or "3260"
        if not port_text.isdigit():
            raise _Error(f"Syntax error, '{port_text}' is not a NUMBER.")
        port = int(port_text)
        ip = (args["ip_address"] or "0.0.0.0").strip("[]")
        if port == 3260:
            out.append("Using default IP port 3260\n")
        if ip == "0.0.0.0":
            out.append("Binding to INADDR_ANY (0.0.0.0)\n")
        if any(p["ip"] == ip and p["port"] == port for p in tpg["portals"]):
            raise _Error("This NetworkPortal already exists in configFS")
        tpg["portals"].append({"ip": ip, "port": port})
        out.append(f"Created network portal {ip}:{port}.\n")
    elif command == "delete":
        args = _bind(["ip_address", "ip_port"], params, 2, command)
        ip = str(args["ip_address"]).strip("[]")
        port_text = str(args["ip_port"])
        portal = next(
            (p for p in tpg["portals"] if p["ip"] == ip and str(p["port"]) == port_text), None
        )
        if portal is None:
            raise _Error(f"No such NetworkPortal in configfs: {ip}:{port_text}")
        tpg["portals"].remove(portal)
        out.append(f"Deleted network portal {ip}:{port_text}\n")
    else:
        raise _Error(f"Command not found {command}")
