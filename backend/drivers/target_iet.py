"""IET (iSCSI Enterprise Target, ``ietd`` + ``ietadm``) as the lab's iSCSI target.

The 2009 study's storage node ran IET. ``ietadm`` changes only the running ietd; a
restart reloads ``ietd.conf``, so export and unexport keep the Target block there in
step (edited with :func:`~backend.drivers.parse_iet.upsert_ietd_target` /
:func:`~backend.drivers.parse_iet.remove_ietd_target`, which keep the rest of the file
byte for byte). The file lives on the storage host, so it is read and written through
the runner: with ``cat`` and a ``sh`` write when it holds no password, and through a
private channel (:func:`~backend.drivers.remote.read_private_file`) when it does
(``IncomingUser``/``OutgoingUser`` lines, ours or the administrator's), so no password
ever reaches the session log.

Status comes from ``/proc/net/iet/volume`` and ``session``. Access: IET lets any
initiator in unless ``/etc/initiators.allow``/``deny`` say otherwise (not managed
here). With ``[storage] chap`` the target gets an ``IncomingUser``.
"""

from __future__ import annotations

import dataclasses

from backend.config import Storage
from backend.drivers.base import (
    DriverError,
    HostCommand,
    LunInfo,
    OperationResult,
    Planner,
    Publish,
    Refused,
    TargetInfo,
    TargetStatus,
)
from backend.drivers.parse_iet import (
    IetLun,
    IetSessionTarget,
    IetTarget,
    IetUser,
    IetVolume,
    parse_ietd_conf,
    parse_proc_session,
    parse_proc_volume,
    remove_ietd_target,
    upsert_ietd_target,
)
from backend.drivers.remote import (
    PUT_FILE,
    SecretCommand,
    chap_user,
    describe_failure,
    device_kind,
    mutate_with_secret,
    read_private_file,
    reveal_chap,
    write_private_file,
)
from backend.events import StorageExported, StorageUnexported
from backend.transport.base import CommandFailed, HostRunner

__all__ = ["CONF_PATH", "PROC_DIR", "IetDriver"]

CONF_PATH = "/etc/iet/ietd.conf"
"""Debian's iscsitarget package; older IET used /etc/ietd.conf."""
PROC_DIR = "/proc/net/iet"

# ietadm returns -errno from main; the shell sees it modulo 256.
_EEXIST_EXIT = 256 - 17
_ENOENT_EXIT = 256 - 2

# Finds CHAP lines without printing them: grep -c prints only how many.
_USER_LINES = r"^[[:space:]]*(Incoming|Outgoing)User[[:space:]]"
_WRITE = 'umask 077 && printf %s "$2" > "$1.miglab-new" && mv -f "$1.miglab-new" "$1"'


class IetDriver:
    """The lab's export on IET; see the module docstring."""

    def __init__(
        self,
        storage: Storage,
        runner: HostRunner,
        publish: Publish,
        *,
        conf_path: str = CONF_PATH,
        proc_dir: str = PROC_DIR,
    ) -> None:
        self.storage = storage
        self.runner = runner
        self.publish = publish
        self.conf_path = conf_path
        self.proc_dir = proc_dir

    @property
    def host(self) -> str:
        return self.runner.name

    async def _proc(self, name: str) -> str:
        result = await self.runner.run(["cat", f"{self.proc_dir}/{name}"])
        if not result.ok:
            raise DriverError(describe_failure(result, "is ietd running? (no IET proc files)"))
        return result.stdout

    async def volumes(self) -> list[IetVolume]:
        return parse_proc_volume(await self._proc("volume"))

    async def sessions(self) -> list[IetSessionTarget]:
        return parse_proc_session(await self._proc("session"))

    async def status(self) -> TargetStatus:
        volumes = await self.volumes()
        sessions = {s.tid: s for s in await self.sessions()}
        infos = []
        for v in volumes:
            luns = tuple(LunInfo(x.lun, x.size_bytes, x.path) for x in v.luns)
            active = sessions.get(v.tid)
            infos.append(TargetInfo(v.name, v.tid, luns, active.initiators if active else ()))
        return TargetStatus(tuple(infos))

    # -- ietd.conf ----------------------------------------------------------------

    async def _read_conf(self) -> tuple[str, bool]:
        """(text, private): private when the file (or the lab) has CHAP passwords."""
        if self.storage.chap is not None:
            # Through the private channel even to find no file: a host where the secret
            # cannot go fails here, before anything was changed.
            return (await read_private_file(self.runner, self.conf_path)) or "", True
        result = await self.runner.run(["grep", "-c", "-i", "-E", _USER_LINES, self.conf_path])
        count = result.stdout.strip()
        if result.failure is None and result.exit_status in (0, 1) and count.isdigit():
            private = int(count) > 0
        elif (await device_kind(self.runner, self.conf_path)) == "missing":
            return "", False  # grep's exit 2: no such file
        else:
            raise DriverError(describe_failure(result, f"cannot read {self.conf_path}"))
        if private:
            return (await read_private_file(self.runner, self.conf_path)) or "", True
        read = await self.runner.run(["cat", self.conf_path])
        if not read.ok:
            raise DriverError(describe_failure(read))
        return read.stdout, False

    async def _write_conf(self, planner: Planner, text: str, private: bool) -> None:
        if not private:
            await planner.mutate(
                self.runner, ["sh", "-c", _WRITE, "miglab-write", self.conf_path, text]
            )
            return
        # The new file holds a password: shown as a pseudo-command, sent privately.
        planner.commands.append(HostCommand(self.host, (PUT_FILE, "--mode=0600", self.conf_path)))
        if not planner.dry_run:
            await write_private_file(self.runner, self.conf_path, text)

    # -- export -----------------------------------------------------------------

    async def export(self, *, dry_run: bool = False) -> OperationResult:
        st = self.storage
        if st.chap is not None:
            chap_user(st)  # refused before anything changes: no target left without CHAP
        volumes = await self.volumes()
        running = next((v for v in volumes if v.name == st.iqn), None)
        conf_text, private = await self._read_conf()
        block = parse_ietd_conf(conf_text).target(st.iqn)
        self._check_same_backing(running, block)
        planner = Planner(dry_run)
        lun = next((x for x in running.luns if x.lun == st.lun), None) if running else None
        iotype = lun.iotype if lun else await self._iotype()
        if running is None:
            tid = max((v.tid for v in volumes), default=0) + 1
            await planner.mutate(self.runner, _ietadm("new", tid, "--params", f"Name={st.iqn}"))
        else:
            tid = running.tid
        credentials = None if dry_run or st.chap is None else reveal_chap(st)
        if st.chap is not None:
            # Before the LUN: IET admits anyone to a target without an IncomingUser.
            await self._chap(planner, tid, running is None, block, credentials)
        if lun is None:
            path = f"Path={st.device},Type={iotype}"
            await planner.mutate(
                self.runner, _ietadm("new", tid, f"--lun={st.lun}", "--params", path)
            )
        wanted = self._block(block, iotype, credentials)
        if block is None or not _same_block(block, wanted, credentials is None):
            await self._write_conf(planner, upsert_ietd_target(conf_text, wanted), private)
        result = planner.result(self._summary(planner, tid))
        if not dry_run:
            exported = StorageExported(
                host=self.host, iqn=st.iqn, lun=st.lun, backing=st.device, changed=result.changed
            )
            self.publish(exported)
        return result

    async def _chap(
        self,
        planner: Planner,
        tid: int,
        new_target: bool,
        block: IetTarget | None,
        credentials: tuple[str, str] | None,
    ) -> None:
        """The IncomingUser in ietd (read from ietd.conf at its start, so the file tells)."""
        user = chap_user(self.storage)
        known = next((u for u in block.incoming_users if u.user == user), None) if block else None
        stale = known is not None and credentials is not None and known.password != credentials[1]
        if stale and not new_target:
            # A changed secret: ietd keeps the old one until the account is replaced.
            delete = _ietadm("delete", tid, "--user", f"--params=IncomingUser={user}")
            await self._tolerant(planner, delete, None, _ENOENT_EXIT)
        if new_target or known is None or stale:
            await self._add_user(planner, tid, credentials)

    async def _iotype(self) -> str:
        kind = await device_kind(self.runner, self.storage.device)
        if kind == "missing":
            raise DriverError(f"{self.host}: {self.storage.device} does not exist (storage.device)")
        return "blockio" if kind == "block" else "fileio"

    def _check_same_backing(self, running: IetVolume | None, block: IetTarget | None) -> None:
        st = self.storage
        for where, luns in (
            ("ietd", {x.lun: x.path for x in running.luns} if running else {}),
            (self.conf_path, {x.lun: x.path for x in block.luns} if block else {}),
        ):
            if luns and luns.get(st.lun) != st.device:
                listed = ", ".join(f"LUN {n} on {path}" for n, path in sorted(luns.items()))
                raise DriverError(
                    f"{self.host}: target {st.iqn} already exists ({where}) with {listed}, but "
                    f"lab.toml asks for LUN {st.lun} on {st.device}; not replacing it. Unexport "
                    "it first (it may be another experiment's disk) or fix [storage]."
                )
        if st.chap is None and block is not None and block.incoming_users:
            raise DriverError(
                f"{self.host}: target {st.iqn} requires CHAP ({self.conf_path} has IncomingUser "
                f"{', '.join(u.user for u in block.incoming_users)}) "
                "but lab.toml has no [storage] chap"
            )

    async def _add_user(
        self, planner: Planner, tid: int, credentials: tuple[str, str] | None
    ) -> None:
        command = SecretCommand(
            tuple(_ietadm("new", tid, "--user")),
            prefix=f"--params=IncomingUser={chap_user(self.storage)},Password=",
        )
        # EEXIST: ietd already has the account (it read ietd.conf when it started).
        await self._tolerant(
            planner, command, credentials[1] if credentials else None, _EEXIST_EXIT
        )

    async def _tolerant(
        self,
        planner: Planner,
        command: list[str] | SecretCommand,
        secret: str | None,
        fine_exit: int,
    ) -> None:
        """Run a mutating ietadm call for which one errno means "already as wanted"."""
        try:
            if isinstance(command, SecretCommand):
                await mutate_with_secret(planner, self.runner, command, secret)
            else:
                await planner.mutate(self.runner, command)
        except CommandFailed as failed:
            if failed.result.exit_status != fine_exit:
                raise

    def _block(
        self, block: IetTarget | None, iotype: str, credentials: tuple[str, str] | None
    ) -> IetTarget:
        st = self.storage
        base = block or IetTarget(st.iqn)
        luns = [x for x in base.luns if x.lun != st.lun]
        old = next((x for x in base.luns if x.lun == st.lun), None)
        luns.append(
            IetLun(st.lun, st.device, old.type if old else iotype, old.params if old else ())
        )
        users = base.incoming_users
        if st.chap is not None:
            others = tuple(u for u in users if u.user != st.chap.user)
            mine = next((u for u in users if u.user == st.chap.user), None)
            if credentials is not None:
                mine = IetUser(credentials[0], credentials[1])
            users = (*(() if mine is None else (mine,)), *others)
        return dataclasses.replace(
            base, luns=tuple(sorted(luns, key=lambda x: x.lun)), incoming_users=users
        )

    def _summary(self, planner: Planner, tid: int) -> str:
        st = self.storage
        where = f"{st.iqn} (tid {tid}) LUN {st.lun} on {st.device} at {self.host}"
        if not planner.commands:
            return f"already exported: {where}"
        return f"{'would export' if planner.dry_run else 'exported'} {where}"

    # -- unexport -----------------------------------------------------------------

    async def unexport(self, *, force: bool = False, dry_run: bool = False) -> OperationResult:
        st = self.storage
        running = next((v for v in await self.volumes() if v.name == st.iqn), None)
        conf_text, private = await self._read_conf()
        planner = Planner(dry_run)
        users: list[str] = []
        if running is not None:
            active = next((s for s in await self.sessions() if s.tid == running.tid), None)
            sessions = active.sessions if active else ()
            users = [_describe(s.initiator, tuple(c.ip for c in s.connections)) for s in sessions]
            if users and not force:
                raise Refused(
                    f"{self.host}: {st.iqn} is in use by {', '.join(users)}; log them out first "
                    "(or force, which cuts them off)"
                )
            for session in sessions:
                for conn in session.connections:
                    where = (f"--sid={session.sid}", f"--cid={conn.cid}")
                    await planner.mutate(self.runner, _ietadm("delete", running.tid, *where))
            await planner.mutate(self.runner, _ietadm("delete", running.tid))
        new_text = remove_ietd_target(conf_text, st.iqn)
        if new_text != conf_text:
            await self._write_conf(planner, new_text, private)
        if not planner.commands:
            return planner.result(f"{st.iqn} is not exported on {self.host}")
        if not dry_run:
            self.publish(
                StorageUnexported(host=self.host, iqn=st.iqn, forced=bool(users), initiators=users)
            )
        verb = "would unexport" if dry_run else "unexported"
        return planner.result(f"{verb} {st.iqn} on {self.host}")


def _ietadm(op: str, tid: int, *args: str) -> list[str]:
    return ["ietadm", "--op", op, f"--tid={tid}", *args]


def _same_block(have: IetTarget, want: IetTarget, secret_unknown: bool) -> bool:
    """Equal blocks; in a dry run (no secret read) only the user names can be compared."""
    if secret_unknown:
        names = [u.user for u in have.incoming_users]
        return dataclasses.replace(have, incoming_users=()) == dataclasses.replace(
            want, incoming_users=()
        ) and names == [u.user for u in want.incoming_users]
    return have == want


def _describe(initiator: str, addresses: tuple[str, ...]) -> str:
    return f"{initiator} ({', '.join(addresses)})" if addresses else initiator
