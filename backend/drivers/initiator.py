"""How the hypervisor hosts reach the shared disk: open-iscsi, or QEMU's own initiator.

:class:`OpenIscsiInitiator` (Xen hosts): ``iscsiadm`` discovery, a node record, login
and logout, sessions from ``-m session -P 3``, and the disk as its udev name
``/dev/disk/by-path/ip-ADDR:PORT-iscsi-IQN-lun-N`` (the same on both hosts, which is
what lets a Xen guest config migrate), polled with ``test -b`` after a login because
udev creates it asynchronously. iscsiadm's exit codes are read by meaning
(:func:`~backend.drivers.parse_iscsiadm.classify`): "already logged in" (15) is
success with nothing changed, "nothing found" (21) an empty answer, the rest an
error that names the host, the command and iscsiadm's stderr.

:class:`QemuIscsiInitiator` (``hypervisor.driver = "qemu"``): QEMU logs in by itself
when the guest starts from an ``iscsi://`` drive, so there is no session to make.
"Log in" checks that the target answers from that host and shows the LUN, with
libiscsi's ``iscsi-ls -s`` under QEMU's initiator name; ``sessions()`` reports the
target as reachable, with no device.

With ``[storage] chap`` both pass the password from a private file on the host
(:func:`~backend.drivers.remote.run_with_secret`), never on a logged command line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Literal

from backend.config import Storage
from backend.drivers.base import (
    DriverError,
    HostCommand,
    InitiatorSessionInfo,
    OperationResult,
    Planner,
    Publish,
)
from backend.drivers.parse_iscsiadm import (
    IscsiadmOutcome,
    IscsiLsTarget,
    OutcomeKind,
    by_path,
    classify,
    parse_discovery,
    parse_iscsi_ls,
    parse_node_list,
    parse_session_tree,
)
from backend.drivers.remote import (
    SecretCommand,
    describe_failure,
    mutate_with_secret,
    reveal_chap,
    run_with_secret,
)
from backend.events import InitiatorSession
from backend.transport.base import CommandResult, HostRunner

__all__ = ["OpenIscsiInitiator", "QemuIscsiInitiator", "qemu_initiator_name"]

SessionState = Literal["logged-in", "logged-out", "failed"]

DEVICE_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.2


class _Hosts:
    """What both initiators share: the lab's target and a runner per hypervisor host."""

    def __init__(
        self, storage: Storage, runners: Mapping[str, HostRunner], publish: Publish
    ) -> None:
        self.storage = storage
        self.runners = runners
        self.publish = publish

    def runner(self, host: str) -> HostRunner:
        try:
            return self.runners[host]
        except KeyError:
            raise DriverError(f"no runner for host {host!r} (not in [hosts]?)") from None

    @property
    def portal(self) -> str:
        """``ADDR:PORT`` (``[V6]:PORT``), as iscsiadm and libiscsi want it."""
        return str(self.storage.portal)

    def _event(self, host: str, state: SessionState, changed: bool) -> None:
        self.publish(
            InitiatorSession(
                host=host, iqn=self.storage.iqn, portal=self.portal, state=state, changed=changed
            )
        )


# --- open-iscsi ------------------------------------------------------------------------


class OpenIscsiInitiator(_Hosts):
    """open-iscsi's ``iscsiadm`` on each Xen host; see the module docstring."""

    def __init__(
        self,
        storage: Storage,
        runners: Mapping[str, HostRunner],
        publish: Publish,
        *,
        device_timeout_s: float = DEVICE_TIMEOUT_S,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        super().__init__(storage, runners, publish)
        self.device_timeout_s = device_timeout_s
        self.poll_interval_s = poll_interval_s

    @property
    def device(self) -> str:
        """The shared disk's udev name, the same on every host that logs in."""
        st = self.storage
        return by_path(st.portal.address, st.portal.port, st.iqn, st.lun)

    def _node_args(self) -> list[str]:
        return ["-m", "node", "-T", self.storage.iqn, "-p", self.portal]

    async def _iscsiadm(self, host: str, *args: str) -> tuple[CommandResult, IscsiadmOutcome]:
        result = await self.runner(host).run(["iscsiadm", *args])
        if result.failure is not None:
            raise DriverError(describe_failure(result))
        return result, classify(result.exit_status or 0, result.stderr)

    async def discover(self, host: str) -> list[str]:
        args = ("-m", "discovery", "-t", "sendtargets", "-p", self.portal)
        result, outcome = await self._iscsiadm(host, *args)
        if outcome.kind is OutcomeKind.NOTHING_FOUND:
            return []
        if not outcome.ok:
            raise DriverError(describe_failure(result, outcome.kind.value))
        return list(dict.fromkeys(r.iqn for r in parse_discovery(result.stdout)))

    async def sessions(self, host: str) -> list[InitiatorSessionInfo]:
        result, outcome = await self._iscsiadm(host, "-m", "session", "-P", "3")
        if outcome.kind is OutcomeKind.NOTHING_FOUND:
            return []
        if not outcome.ok:
            raise DriverError(describe_failure(result, outcome.kind.value))
        found = []
        for s in parse_session_tree(result.stdout):
            portal = s.persistent_portal
            address = f"[{portal.address}]" if ":" in portal.address else portal.address
            if s.iqn == self.storage.iqn and s.disk_for_lun(self.storage.lun):
                device: str | None = by_path(portal.address, portal.port, s.iqn, self.storage.lun)
            else:
                device = f"/dev/{s.disks[0].device}" if s.disks else None
            found.append(InitiatorSessionInfo(host, f"{address}:{portal.port}", s.iqn, device))
        return found

    def _ours(self, sessions: list[InitiatorSessionInfo]) -> InitiatorSessionInfo | None:
        return next(
            (s for s in sessions if s.iqn == self.storage.iqn and s.portal == self.portal), None
        )

    async def login(
        self, host: str, *, dry_run: bool = False, target_ready: bool = True
    ) -> OperationResult:
        # The login asks only this host (its sessions, its node records), never the
        # target, so the plan is the same whether the export exists yet or not.
        runner = self.runner(host)
        planner = Planner(dry_run)
        if self._ours(await self.sessions(host)) is not None:
            await self._wait_for_device(host)
            self._event(host, "logged-in", changed=False)
            return planner.result(f"{host} is already logged in to {self.storage.iqn}")
        await self._ensure_record(host, planner)
        await self._set_chap(host, planner)
        argv = ["iscsiadm", *self._node_args(), "--login"]
        planner.commands.append(self._command(host, argv))
        if dry_run:
            return planner.result(f"would log {host} in to {self.storage.iqn} at {self.portal}")
        result = await runner.run(argv)
        outcome = classify(result.exit_status or 0, result.stderr)
        if result.failure is not None or not outcome.settled:
            self._event(host, "failed", changed=False)
            raise DriverError(describe_failure(result, f"login {outcome.kind.value}"))
        await self._wait_for_device(host)
        # 15: a session appeared since we looked (another login won the race): the
        # state is as wanted and this call changed nothing.
        changed = outcome.ok
        self._event(host, "logged-in", changed=changed)
        what = "logged in" if changed else "was already logged in"
        detail = f"{host} {what} to {self.storage.iqn}; disk {self.device}"
        return OperationResult(changed, list(planner.commands), dry_run, detail)

    async def _ensure_record(self, host: str, planner: Planner) -> None:
        result, outcome = await self._iscsiadm(host, "-m", "node")
        if outcome.kind is OutcomeKind.NOTHING_FOUND:
            records = []
        elif outcome.ok:
            records = parse_node_list(result.stdout)
        else:
            raise DriverError(describe_failure(result, outcome.kind.value))
        st = self.storage
        wanted = (st.iqn, st.portal.address, st.portal.port)
        if any((r.iqn, r.portal.address, r.portal.port) == wanted for r in records):
            return
        await planner.mutate(self.runner(host), ["iscsiadm", *self._node_args(), "-o", "new"])

    async def _set_chap(self, host: str, planner: Planner) -> None:
        chap = self.storage.chap
        if chap is None:
            return
        runner = self.runner(host)
        update = ["iscsiadm", *self._node_args(), "-o", "update", "-n"]
        await planner.mutate(runner, [*update, "node.session.auth.authmethod", "-v", "CHAP"])
        await planner.mutate(runner, [*update, "node.session.auth.username", "-v", chap.user])
        credentials = None if planner.dry_run else reveal_chap(self.storage)
        command = SecretCommand((*update, "node.session.auth.password", "-v"))
        await mutate_with_secret(planner, runner, command, credentials[1] if credentials else None)

    async def _wait_for_device(self, host: str) -> None:
        """Poll ``test -b`` until udev has made the by-path link (or time is up)."""
        runner = self.runner(host)
        deadline = time.monotonic() + self.device_timeout_s
        while True:
            result = await runner.run(["test", "-b", self.device], log_output=False)
            if result.ok:
                return
            if result.failure is not None:
                raise DriverError(describe_failure(result))
            if time.monotonic() >= deadline:
                raise DriverError(
                    f"{host}: logged in to {self.storage.iqn}, but {self.device} did not appear "
                    f"within {self.device_timeout_s:g} s (is LUN {self.storage.lun} exported? "
                    "see `iscsiadm -m session -P 3`)"
                )
            await asyncio.sleep(self.poll_interval_s)

    async def logout(self, host: str, *, dry_run: bool = False) -> OperationResult:
        planner = Planner(dry_run)
        if self._ours(await self.sessions(host)) is None:
            if not dry_run:
                self._event(host, "logged-out", changed=False)
            return planner.result(f"{host} has no session to {self.storage.iqn}")
        argv = ["iscsiadm", *self._node_args(), "--logout"]
        planner.commands.append(self._command(host, argv))
        if dry_run:
            return planner.result(f"would log {host} out of {self.storage.iqn}")
        result = await self.runner(host).run(argv)
        outcome = classify(result.exit_status or 0, result.stderr)
        if result.failure is not None or outcome.kind not in (
            OutcomeKind.OK,
            OutcomeKind.NOTHING_FOUND,
        ):
            raise DriverError(describe_failure(result, f"logout {outcome.kind.value}"))
        changed = outcome.ok  # 21: it logged out by itself since we looked
        self._event(host, "logged-out", changed=changed)
        return OperationResult(
            changed, list(planner.commands), dry_run, f"{host} logged out of {self.storage.iqn}"
        )

    def _command(self, host: str, argv: list[str]) -> HostCommand:
        return HostCommand(host, tuple(argv))


# --- QEMU's initiator (libiscsi) ------------------------------------------------------


def qemu_initiator_name(guest_name: str) -> str:
    """The initiator name QEMU's iscsi block driver uses for a guest started with ``-name``."""
    return f"iqn.2008-11.org.linux-kvm:{guest_name}"


class QemuIscsiInitiator(_Hosts):
    """QEMU's built-in initiator; checked with libiscsi's ``iscsi-ls``. See the module doc."""

    def __init__(
        self,
        storage: Storage,
        runners: Mapping[str, HostRunner],
        publish: Publish,
        *,
        initiator_name: str,
    ) -> None:
        super().__init__(storage, runners, publish)
        self.initiator_name = initiator_name
        if storage.chap is not None and any(c in storage.chap.user for c in "%@/:"):
            raise DriverError(f"CHAP user {storage.chap.user!r} cannot go into an iscsi:// URL")

    @property
    def device(self) -> str:
        """The drive QEMU opens: ``iscsi://PORTAL/IQN/LUN`` (no password in it)."""
        return f"iscsi://{self.portal}/{self.storage.iqn}/{self.storage.lun}"

    async def _iscsi_ls(self, host: str, *flags: str) -> tuple[CommandResult, list[IscsiLsTarget]]:
        runner = self.runner(host)
        chap = self.storage.chap
        user = f"{chap.user}@" if chap is not None else ""
        argv = ("iscsi-ls", *flags, "-i", self.initiator_name, f"iscsi://{user}{self.portal}/")
        if chap is None:
            result = await runner.run(list(argv))
        else:
            credentials = reveal_chap(self.storage)
            assert credentials is not None
            command = SecretCommand(argv, env="LIBISCSI_CHAP_PASSWORD")
            result = await run_with_secret(runner, command, credentials[1])
        if result.failure is not None or result.exit_status not in (0, _LIBISCSI_FAILED):
            raise DriverError(describe_failure(result))
        try:
            return result, parse_iscsi_ls(result.stdout)
        except ValueError as exc:
            raise DriverError(
                describe_failure(result, f"unreadable iscsi-ls output: {exc}")
            ) from None

    async def discover(self, host: str) -> list[str]:
        result, targets = await self._iscsi_ls(host)
        if result.exit_status != 0:
            raise DriverError(describe_failure(result, "the target did not answer"))
        return list(dict.fromkeys(t.iqn for t in targets))

    async def _check(self, host: str) -> str | None:
        """None when the target answers from ``host`` and shows the LUN; else why not."""
        st = self.storage
        result, targets = await self._iscsi_ls(host, "-s")
        ours = next((t for t in targets if t.iqn == st.iqn), None)
        if ours is None:
            if result.exit_status != 0:
                return describe_failure(result, "the target did not answer")
            offered = ", ".join(t.iqn for t in targets) or "nothing"
            return f"{host}: {self.portal} does not offer {st.iqn} (it offers {offered})"
        if ours.error is not None:
            return f"{host}: login to {st.iqn} at {self.portal} failed: {ours.error}"
        lun = next((x for x in ours.luns if x.lun == st.lun), None)
        if lun is None:
            shown = ", ".join(f"{x.lun} ({x.type})" for x in ours.luns) or "none"
            return f"{host}: {st.iqn} has no LUN {st.lun} (LUNs: {shown})"
        return None

    async def login(
        self, host: str, *, dry_run: bool = False, target_ready: bool = True
    ) -> OperationResult:
        planner = Planner(dry_run)
        if dry_run and not target_ready:  # nothing to check against before the export
            self.runner(host)  # an unknown host is an error here too
            return planner.result(
                f"once {self.storage.iqn} is exported: check that LUN {self.storage.lun} "
                f"answers from {host}; QEMU logs in itself when the guest starts ({self.device})"
            )
        problem = await self._check(host)
        if problem is not None:
            if not dry_run:
                self._event(host, "failed", changed=False)
            raise DriverError(problem)
        if not dry_run:
            self._event(host, "logged-in", changed=False)
        return planner.result(
            f"{self.storage.iqn} LUN {self.storage.lun} answers from {host}; QEMU logs in "
            f"itself when the guest starts ({self.device})"
        )

    async def logout(self, host: str, *, dry_run: bool = False) -> OperationResult:
        self.runner(host)  # an unknown host is an error here too
        if not dry_run:
            self._event(host, "logged-out", changed=False)
        return Planner(dry_run).result(
            f"nothing to do on {host}: QEMU's initiator holds no session outside QEMU"
        )

    async def sessions(self, host: str) -> list[InitiatorSessionInfo]:
        if await self._check(host) is not None:
            return []
        return [InitiatorSessionInfo(host, self.portal, self.storage.iqn, None)]


_LIBISCSI_FAILED = 10  # iscsi-ls: could not connect or log in (it says why on stdout)
