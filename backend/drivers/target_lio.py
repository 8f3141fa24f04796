"""LIO (the kernel target, managed with ``targetcli``) as the lab's iSCSI target.

Export builds, per lab.toml: a backstore for ``storage.device`` (an existing one for
that path is reused; else ``block`` for a block device, ``fileio`` for a file, named
``miglab_<iqn suffix>``), the target (targetcli adds TPG 1 and a portal on
0.0.0.0:3260), LUN ``storage.lun``, access for any initiator (demo mode:
``generate_node_acls=1`` with writes allowed, the equivalent of tgt's ``-I ALL``;
left alone when the TPG already has ACLs), a portal for ``storage.portal`` unless one
covers it, TPG-wide CHAP when ``[storage] chap`` is set, and ``saveconfig`` so that
the export survives a reboot (one-shot targetcli does not save by itself).

Connected initiators: ``targetcli sessions detail`` lists the sessions of explicit
ACLs; demo-mode sessions only show in configfs (``tpgt_N/dynamic_sessions``, Linux
>= 4.3), read with ``cat`` per TPG. The CHAP password goes to targetcli from a private
file on the host, and targetcli's echo of it ("Parameter password is now ...") is
dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.config import Storage
from backend.drivers import ParseError
from backend.drivers.base import (
    DriverError,
    LunInfo,
    OperationResult,
    Planner,
    Publish,
    Refused,
    TargetInfo,
    TargetStatus,
)
from backend.drivers.parse_targetcli import (
    LioConfig,
    LioStorageObject,
    LioTarget,
    LioTpg,
    parse_targetcli_ls,
)
from backend.drivers.remote import (
    SecretCommand,
    chap_user,
    describe_failure,
    device_kind,
    mutate_with_secret,
    reveal_chap,
)
from backend.events import StorageExported, StorageUnexported
from backend.transport.base import HostRunner

__all__ = ["CONFIGFS", "LioDriver", "LioSession", "parse_dynamic_sessions", "parse_sessions"]

CONFIGFS = "/sys/kernel/config/target"
_WILDCARDS = {"0.0.0.0", "::0", "::"}


@dataclass(frozen=True)
class LioSession:
    """One session as ``targetcli sessions detail`` shows it (explicit ACLs only)."""

    initiator: str
    sid: int
    addresses: tuple[str, ...] = ()
    backstores: tuple[str, ...] = ()
    """``plugin/name`` of the storage objects mapped to the session's ACL."""


_SESSION_HEAD = re.compile(
    r"^alias: (?P<alias>.*)\tsid: (?P<sid>\d+) type: \S+ session-state: \S+$"
)
_SESSION_NAME = re.compile(r"^name: (?P<name>\S+)(?: \(.*\))?$")
_SESSION_LUN = re.compile(r"^mapped-lun: \d+ backstore: (?P<so>\S+) mode: \S+$")
_SESSION_ADDR = re.compile(r"^address: (?P<addr>\S+) \(\w+\)\s+cid: \d+ connection-state: \S+$")


def parse_sessions(text: str) -> list[LioSession]:
    """Parse ``targetcli sessions detail`` (targetcli-fb ui_root.ui_command_sessions)."""
    sessions: list[LioSession] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line == "(no open sessions)":
            continue
        if m := _SESSION_HEAD.match(raw):
            sessions.append(LioSession(m.group("alias"), int(m.group("sid"))))
            continue
        if not sessions:
            raise ParseError("session details before an 'alias: ... sid:' line", raw, lineno)
        s = sessions[-1]
        if m := _SESSION_NAME.match(line):
            sessions[-1] = LioSession(m.group("name"), s.sid, s.addresses, s.backstores)
        elif m := _SESSION_LUN.match(line):
            sessions[-1] = LioSession(
                s.initiator, s.sid, s.addresses, (*s.backstores, m.group("so"))
            )
        elif m := _SESSION_ADDR.match(line):
            sessions[-1] = LioSession(
                s.initiator, s.sid, (*s.addresses, m.group("addr")), s.backstores
            )
        else:
            raise ParseError("unexpected line in targetcli sessions", raw, lineno)
    return sessions


def parse_dynamic_sessions(text: str) -> list[str]:
    """Parse a TPG's configfs ``dynamic_sessions``: one initiator name a line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _so_name(iqn: str) -> str:
    suffix = iqn.rsplit(":", 1)[-1] if ":" in iqn else iqn
    return "miglab_" + re.sub(r"[^A-Za-z0-9_-]", "_", suffix)


class LioDriver:
    """The lab's export on LIO; see the module docstring."""

    def __init__(
        self,
        storage: Storage,
        runner: HostRunner,
        publish: Publish,
        *,
        configfs: str = CONFIGFS,
    ) -> None:
        self.storage = storage
        self.runner = runner
        self.publish = publish
        self.configfs = configfs

    @property
    def host(self) -> str:
        return self.runner.name

    @property
    def tpg_path(self) -> str:
        return f"/iscsi/{self.storage.iqn}/tpg1"

    async def _targetcli(self, *args: str) -> str:
        result = await self.runner.run(["targetcli", *args])
        if not result.ok:
            raise DriverError(describe_failure(result))
        return result.stdout

    async def config(self) -> LioConfig:
        return parse_targetcli_ls(await self._targetcli("ls"))

    async def _sessions(self, config: LioConfig) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
        """wwn -> connected initiators: (name, addresses if known)."""
        by_target: dict[str, list[tuple[str, tuple[str, ...]]]] = {
            t.wwn: [] for t in config.targets
        }
        for session in parse_sessions(await self._targetcli("sessions", "detail")):
            for target in config.targets:
                if _session_belongs(session, target):
                    by_target[target.wwn].append((session.initiator, session.addresses))
        for target in config.targets:
            for tpg in target.tpgs:
                path = f"{self.configfs}/iscsi/{target.wwn}/tpgt_{tpg.tag}/dynamic_sessions"
                # Absent before Linux 4.3, or for a TPG being torn down: no demo sessions.
                result = await self.runner.run(["cat", path])
                if result.failure is not None:
                    raise DriverError(describe_failure(result))
                if result.ok:
                    names = parse_dynamic_sessions(result.stdout)
                    by_target[target.wwn].extend((name, ()) for name in names)
        return by_target

    async def status(self) -> TargetStatus:
        config = await self.config()
        sessions = await self._sessions(config)
        infos = []
        for target in config.targets:
            luns: list[LunInfo] = []
            for tpg in target.tpgs:
                for lun in tpg.luns:
                    so = config.storage_object(lun.plugin, lun.storage_object)
                    size = so.size_bytes if so is not None else None
                    luns.append(LunInfo(lun.lun, size, so.path if so is not None else lun.path))
            names = tuple(name for name, _ in sessions.get(target.wwn, []))
            infos.append(TargetInfo(target.wwn, None, tuple(luns), names))
        return TargetStatus(tuple(infos))

    # -- export -----------------------------------------------------------------

    async def export(self, *, dry_run: bool = False) -> OperationResult:
        st = self.storage
        if st.chap is not None:
            chap_user(st)  # refused before anything changes: no target left without CHAP
        config = await self.config()
        target = config.target(st.iqn)
        tpg = target.tpgs[0] if target is not None and target.tpgs else None
        planner = Planner(dry_run)
        so = next((s for s in config.storage_objects if s.path == st.device), None)
        if tpg is not None:
            self._check_same_backing(config, tpg)
        if so is None and (tpg is None or not any(x.lun == st.lun for x in tpg.luns)):
            so = await self._new_backstore(planner)
        if target is None:
            await planner.mutate(self.runner, ["targetcli", "/iscsi", "create", st.iqn])
        if tpg is None or not any(x.lun == st.lun for x in tpg.luns):
            assert so is not None
            luns = f"{self.tpg_path}/luns"
            backstore = f"/backstores/{so.plugin}/{so.name}"
            await planner.mutate(
                self.runner, ["targetcli", luns, "create", backstore, f"lun={st.lun}"]
            )
        await self._chap(planner, tpg)
        await self._portal(planner, tpg)
        # Access last: until demo mode is on, no initiator without an ACL gets in, so a
        # failure above never leaves the disk open without the CHAP it was meant to have.
        if tpg is None or (not tpg.acls and not tpg.generate_node_acls):
            await planner.mutate(
                self.runner,
                [
                    "targetcli",
                    self.tpg_path,
                    "set",
                    "attribute",
                    "generate_node_acls=1",
                    "demo_mode_write_protect=0",
                    "cache_dynamic_acls=1",
                ],
            )
        if planner.commands:
            await planner.mutate(self.runner, ["targetcli", "saveconfig"])
        result = planner.result(self._summary(planner))
        if not dry_run:
            self.publish(
                StorageExported(
                    host=self.host,
                    iqn=st.iqn,
                    lun=st.lun,
                    backing=st.device,
                    changed=result.changed,
                )
            )
        return result

    def _check_same_backing(self, config: LioConfig, tpg: LioTpg) -> None:
        st = self.storage
        have: dict[int, str | None] = {}
        for lun in tpg.luns:
            so = config.storage_object(lun.plugin, lun.storage_object)
            have[lun.lun] = so.path if so is not None else lun.path
        if have and have.get(st.lun) != st.device:
            listed = ", ".join(f"LUN {n} on {path}" for n, path in sorted(have.items()))
            raise DriverError(
                f"{self.host}: target {st.iqn} already exists with {listed}, but lab.toml asks "
                f"for LUN {st.lun} on {st.device}; not replacing it. Unexport it first (it may "
                "be another experiment's disk) or fix [storage]."
            )

    async def _new_backstore(self, planner: Planner) -> LioStorageObject:
        st = self.storage
        kind = await device_kind(self.runner, st.device)
        if kind == "missing":
            raise DriverError(f"{self.host}: {st.device} does not exist (storage.device)")
        name = _so_name(st.iqn)
        if kind == "block":
            argv = ["targetcli", "/backstores/block", "create", f"name={name}", f"dev={st.device}"]
        else:
            argv = ["targetcli", "/backstores/fileio", "create", f"name={name}"]
            argv.append(f"file_or_dev={st.device}")
        await planner.mutate(self.runner, argv)
        plugin = "block" if kind == "block" else "fileio"
        return LioStorageObject(plugin, name, st.device, None)

    async def _portal(self, planner: Planner, tpg: LioTpg | None) -> None:
        address, port = self.storage.portal.address, self.storage.portal.port
        # A new target gets targetcli's default portal 0.0.0.0:3260.
        portals = [(p.address, p.port) for p in tpg.portals] if tpg else [("0.0.0.0", 3260)]
        if any(p == port and a in (_WILDCARDS | {address}) for a, p in portals):
            return
        await planner.mutate(
            self.runner, ["targetcli", f"{self.tpg_path}/portals", "create", address, str(port)]
        )

    async def _chap(self, planner: Planner, tpg: LioTpg | None) -> None:
        st = self.storage
        tpg_auth = tpg is not None and "tpg-auth" in tpg.flags
        if st.chap is None:
            if tpg is not None and any(f in tpg.flags for f in ("tpg-auth", "auth per-acl")):
                raise DriverError(
                    f"{self.host}: target {st.iqn} requires CHAP but lab.toml has no "
                    "[storage] chap; add it or set authentication=0 on the TPG"
                )
            return
        user = None
        if tpg_auth:
            text = await self._targetcli(self.tpg_path, "get", "auth", "userid")
            user = text.strip().partition("=")[2].strip() or None
        if tpg_auth and user == st.chap.user:
            return  # LIO does not show the password; the account is kept as it is
        await planner.mutate(
            self.runner, ["targetcli", self.tpg_path, "set", "attribute", "authentication=1"]
        )
        credentials = None if planner.dry_run else reveal_chap(st)
        command = SecretCommand(
            ("targetcli", self.tpg_path, "set", "auth", f"userid={chap_user(st)}"),
            prefix="password=",
            quiet=True,
        )
        await mutate_with_secret(
            planner, self.runner, command, credentials[1] if credentials else None
        )

    def _summary(self, planner: Planner) -> str:
        st = self.storage
        where = f"{st.iqn} LUN {st.lun} on {st.device} at {self.host}"
        if not planner.commands:
            return f"already exported: {where}"
        return f"{'would export' if planner.dry_run else 'exported'} {where}"

    # -- unexport -------------------------------------------------------------

    async def unexport(self, *, force: bool = False, dry_run: bool = False) -> OperationResult:
        st = self.storage
        config = await self.config()
        target = config.target(st.iqn)
        planner = Planner(dry_run)
        if target is None:
            return planner.result(f"{st.iqn} is not exported on {self.host}")
        users = [_describe(*s) for s in (await self._sessions(config)).get(st.iqn, [])]
        if users and not force:
            raise Refused(
                f"{self.host}: {st.iqn} is in use by {', '.join(users)}; log them out first "
                "(or force, which cuts them off)"
            )
        await planner.mutate(self.runner, ["targetcli", "/iscsi", "delete", st.iqn])
        ours = [s for s in config.storage_objects if s.name == _so_name(st.iqn)]
        for so in ours:
            used_elsewhere = any(
                lun.plugin == so.plugin and lun.storage_object == so.name
                for t in config.targets
                if t.wwn != st.iqn
                for tpg in t.tpgs
                for lun in tpg.luns
            )
            if not used_elsewhere:
                argv = ["targetcli", f"/backstores/{so.plugin}", "delete", so.name]
                await planner.mutate(self.runner, argv)
        await planner.mutate(self.runner, ["targetcli", "saveconfig"])
        if not dry_run:
            self.publish(
                StorageUnexported(host=self.host, iqn=st.iqn, forced=bool(users), initiators=users)
            )
        verb = "would unexport" if dry_run else "unexported"
        return planner.result(f"{verb} {st.iqn} on {self.host}")


def _describe(initiator: str, addresses: tuple[str, ...]) -> str:
    return f"{initiator} ({', '.join(addresses)})" if addresses else initiator


def _session_belongs(session: LioSession, target: LioTarget) -> bool:
    """Whether an explicit-ACL session is to ``target`` (sessions do not name targets)."""
    for tpg in target.tpgs:
        if session.initiator not in tpg.initiators():
            continue
        if not session.backstores:
            return True
        names = {f"{lun.plugin}/{lun.storage_object}" for lun in tpg.luns}
        if names & set(session.backstores):
            return True
    return False
