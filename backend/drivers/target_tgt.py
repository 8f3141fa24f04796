"""tgt (userspace ``tgtd``, managed with ``tgtadm``) as the lab's iSCSI target.

Every ``tgtadm`` call carries ``-C N`` when ``[storage] tgt_control_port`` is set, so
several tgtd on one host (one per test, or the sandbox's) never mix. What export
builds, per lab.toml: target ``--tid T -T IQN``, LUN ``storage.lun`` backed by
``storage.device`` (tgt keeps LUN 0 for its controller), access ``-I ALL`` (like the
study's IET default: any initiator may log in), and with ``[storage] chap`` an
incoming CHAP account bound to the target. tgt forgets all of it when tgtd restarts
(``/etc/tgt/targets.conf`` is the persistent form; not managed here).

tgtadm cannot read the password from anywhere but its command line, so the account
command gets it from a private file on the host (:func:`~backend.drivers.remote.
run_with_secret`); it is visible to that host's ``ps`` for the instant tgtadm runs,
never to miglab's logs. tgt cannot show a password either: an existing account of
that name is kept as it is.
"""

from __future__ import annotations

import asyncio

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
from backend.drivers.parse_tgt import (
    TgtadmError,
    TgtTarget,
    classify_tgtadm,
    parse_show_account,
    parse_show_target,
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
from backend.transport.base import CommandFailed, HostRunner

__all__ = ["TgtDriver"]

# Retries of a forced delete while tgt says the target or LUN is still busy.
FORCE_ATTEMPTS = 25
FORCE_RETRY_S = 0.2


class TgtDriver:
    """The lab's export on tgtd; see the module docstring."""

    def __init__(self, storage: Storage, runner: HostRunner, publish: Publish) -> None:
        self.storage = storage
        self.runner = runner
        self.publish = publish

    @property
    def host(self) -> str:
        return self.runner.name

    def adm(self, *args: str | int) -> list[str]:
        """A ``tgtadm`` argv for the lab's tgtd instance."""
        control = self.storage.tgt_control_port
        head = ["tgtadm"] + (["-C", str(control)] if control is not None else [])
        return [*head, "--lld", "iscsi", *(str(a) for a in args)]

    async def _show(self, *args: str) -> str:
        result = await self.runner.run(self.adm("--op", "show", *args))
        if result.ok:
            return result.stdout
        outcome = classify_tgtadm(result.exit_status or 0, result.stderr)
        if outcome.error is TgtadmError.NO_DAEMON:
            port = self.storage.tgt_control_port or 0
            raise DriverError(
                describe_failure(result, f"no tgtd answers on control port {port} on {self.host}")
            )
        raise DriverError(describe_failure(result))

    async def targets(self) -> list[TgtTarget]:
        """Every target of this tgtd, as ``--op show --mode target`` lists them."""
        return parse_show_target(await self._show("--mode", "target"))

    async def status(self) -> TargetStatus:
        return TargetStatus(tuple(_info(t) for t in await self.targets()))

    # -- export ---------------------------------------------------------------------

    async def export(self, *, dry_run: bool = False) -> OperationResult:
        st = self.storage
        if st.chap is not None:
            chap_user(st)  # refused before anything changes: no target left without CHAP
        targets = await self.targets()
        found = next((t for t in targets if t.iqn == st.iqn), None)
        planner = Planner(dry_run)
        if found is not None:
            self._check_same_backing(found)
            self._check_chap_wanted(found)
        if found is None or found.lun(st.lun) is None:
            await self._check_device()
        await self._account(planner)
        if found is None:
            tid = max((t.tid for t in targets), default=0) + 1
            target: list[str | int] = ["--mode", "target", "--tid", tid, "-T", st.iqn]
            await planner.mutate(self.runner, self.adm("--op", "new", *target))
            await self._new_lun(planner, tid)
        else:
            tid = found.tid
            if found.lun(st.lun) is None:
                await self._new_lun(planner, tid)
        await self._bind_account(planner, tid, found)
        if found is None or not found.acls:
            # Access last: a failure before it leaves a target nobody can log in to,
            # never one that lets initiators in without the CHAP it was meant to have.
            access: list[str | int] = ["--mode", "target", "--tid", tid, "-I", "ALL"]
            await planner.mutate(self.runner, self.adm("--op", "bind", *access))
        result = planner.result(self._summary(planner, tid))
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

    async def _check_device(self) -> None:
        if await device_kind(self.runner, self.storage.device) == "missing":
            raise DriverError(f"{self.host}: {self.storage.device} does not exist (storage.device)")

    async def _new_lun(self, planner: Planner, tid: int) -> None:
        st = self.storage
        lun: list[str | int] = ["--mode", "logicalunit", "--tid", tid, "--lun", st.lun]
        lun += ["-b", st.device]
        await planner.mutate(self.runner, self.adm("--op", "new", *lun))

    def _check_same_backing(self, found: TgtTarget) -> None:
        st = self.storage
        data = {lun.lun: lun.backing_store_path for lun in found.data_luns}
        if data and data.get(st.lun) != st.device:
            have = ", ".join(f"LUN {n} on {path}" for n, path in sorted(data.items()))
            raise DriverError(
                f"{self.host}: target {st.iqn} (tid {found.tid}) already exists with {have}, "
                f"but lab.toml asks for LUN {st.lun} on {st.device}; not replacing it. "
                "Unexport it first (it may be another experiment's disk) or fix [storage]."
            )

    def _check_chap_wanted(self, found: TgtTarget) -> None:
        bound = [a.user for a in found.accounts if not a.outgoing]
        if self.storage.chap is None and bound:
            raise DriverError(
                f"{self.host}: target {self.storage.iqn} requires CHAP (account "
                f"{', '.join(bound)}) but lab.toml has no [storage] chap; add it or unbind "
                "the account"
            )

    async def _account(self, planner: Planner) -> None:
        """The CHAP account, made first: if the password cannot get to the host, nothing
        else has been changed."""
        st = self.storage
        if st.chap is None:
            return
        accounts = parse_show_account(await self._show("--mode", "account"))
        if st.chap.user in accounts:
            return  # tgt cannot show passwords: an existing account is kept as it is
        credentials = None if planner.dry_run else reveal_chap(st)
        account = ["--mode", "account", "--user", chap_user(st), "--password"]
        command = SecretCommand(tuple(self.adm("--op", "new", *account)))
        secret = credentials[1] if credentials else None
        await mutate_with_secret(planner, self.runner, command, secret)

    async def _bind_account(self, planner: Planner, tid: int, found: TgtTarget | None) -> None:
        st = self.storage
        bound = [a.user for a in found.accounts if not a.outgoing] if found else []
        if st.chap is not None and st.chap.user not in bound:
            user = chap_user(st)
            account: list[str | int] = ["--mode", "account", "--tid", tid, "--user", user]
            await planner.mutate(self.runner, self.adm("--op", "bind", *account))

    def _summary(self, planner: Planner, tid: int) -> str:
        st = self.storage
        where = f"{st.iqn} (tid {tid}) LUN {st.lun} on {st.device} at {self.host}"
        if not planner.commands:
            return f"already exported: {where}"
        return f"{'would export' if planner.dry_run else 'exported'} {where}"

    async def _force_delete(self, planner: Planner, found: TgtTarget) -> None:
        """Cut the initiators off and delete the target.

        With commands in flight tgt refuses even a ``--force`` delete ("this logical unit
        is still active") for seconds, as long as the initiator keeps reconnecting;
        taking the target offline first makes it drain at once (measured: 3 s of
        retries without, none with). The delete is still retried while tgt says busy.
        """
        offline = self.adm("--op", "update", "--mode", "target", "--tid", found.tid)
        await planner.mutate(self.runner, [*offline, "-n", "state", "-v", "offline"])
        argv = [*self.adm("--op", "delete", "--mode", "target", "--tid", found.tid), "--force"]
        planner.commands.append(HostCommand(self.host, tuple(argv)))
        if planner.dry_run:
            return
        busy = {TgtadmError.LUN_ACTIVE, TgtadmError.TARGET_ACTIVE}
        for attempt in range(FORCE_ATTEMPTS):
            result = await self.runner.run(argv)
            if result.ok:
                return
            outcome = classify_tgtadm(result.exit_status or 0, result.stderr)
            if outcome.error not in busy or attempt == FORCE_ATTEMPTS - 1:
                raise CommandFailed(result)
            await asyncio.sleep(FORCE_RETRY_S)

    # -- unexport -----------------------------------------------------------------

    async def unexport(self, *, force: bool = False, dry_run: bool = False) -> OperationResult:
        st = self.storage
        targets = await self.targets()
        found = next((t for t in targets if t.iqn == st.iqn), None)
        planner = Planner(dry_run)
        if found is None:
            return planner.result(f"{st.iqn} is not exported on {self.host}")
        users = [_describe(n.initiator, n.addresses) for n in found.nexuses]
        if users and not force:
            raise Refused(
                f"{self.host}: {st.iqn} is in use by {', '.join(users)}; log them out first "
                "(or force, which cuts them off)"
            )
        if users:
            await self._force_delete(planner, found)
        else:
            delete = self.adm("--op", "delete", "--mode", "target", "--tid", found.tid)
            await planner.mutate(self.runner, delete)
        if st.chap is not None:
            others = [
                t
                for t in targets
                if t is not found and any(a.user == st.chap.user for a in t.accounts)
            ]
            accounts = parse_show_account(await self._show("--mode", "account"))
            if st.chap.user in accounts and not others:
                await planner.mutate(
                    self.runner,
                    self.adm("--op", "delete", "--mode", "account", "--user", st.chap.user),
                )
        verb = "would unexport" if dry_run else "unexported"
        if not dry_run:
            self.publish(
                StorageUnexported(host=self.host, iqn=st.iqn, forced=bool(users), initiators=users)
            )
        return planner.result(f"{verb} {st.iqn} (tid {found.tid}) on {self.host}")


def _describe(initiator: str, addresses: tuple[str, ...]) -> str:
    return f"{initiator} ({', '.join(addresses)})" if addresses else initiator


def _info(target: TgtTarget) -> TargetInfo:
    luns = tuple(
        # tgt prints decimal MB, rounded: the size is approximate to +-0.5 MB.
        LunInfo(
            lun.lun,
            lun.size_mb * 1_000_000 if lun.size_mb is not None else None,
            lun.backing_store_path,
        )
        for lun in target.data_luns
    )
    return TargetInfo(target.iqn, target.tid, luns, target.initiators)
