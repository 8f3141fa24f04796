"""The drivers a lab.toml asks for: one hypervisor, one iSCSI target, one initiator.

* :func:`hypervisor_driver` picks Xen or QEMU from ``[hypervisor] driver``;
* :func:`target_driver` picks tgt, LIO or IET from ``[storage] driver``;
* :func:`initiator_driver` picks open-iscsi for Xen hosts and QEMU's own initiator
  (libiscsi) for ``hypervisor.driver = "qemu"``.

This module sits above every driver: it imports them all, and no module in
``backend/drivers/`` imports it (tests/unit/test_import_layers.py checks both ways).
"""

from __future__ import annotations

from collections.abc import Mapping

from backend.config import LabConfig
from backend.drivers.base import HypervisorDriver, InitiatorDriver, Publish, TargetDriver
from backend.drivers.hv_qemu import QemuDriver
from backend.drivers.hv_xen import XenDriver
from backend.drivers.initiator import OpenIscsiInitiator, QemuIscsiInitiator, qemu_initiator_name
from backend.drivers.target_iet import IetDriver
from backend.drivers.target_lio import LioDriver
from backend.drivers.target_tgt import TgtDriver
from backend.transport.base import HostRunner

__all__ = ["hypervisor_driver", "initiator_driver", "target_driver"]


def hypervisor_driver(
    lab: LabConfig, runners: Mapping[str, HostRunner], publish: Publish
) -> HypervisorDriver:
    """The driver for ``lab.hypervisor.driver``; ``runners`` maps host names to runners
    (only the two hypervisor hosts are looked up, when first used)."""
    if lab.hypervisor.driver == "xen":
        return XenDriver(lab, runners, publish)
    return QemuDriver(lab, runners, publish)


def target_driver(lab: LabConfig, runner: HostRunner, publish: Publish) -> TargetDriver:
    """The target driver ``[storage] driver`` names, on the storage host's runner."""
    driver = lab.storage.driver
    if driver == "tgt":
        return TgtDriver(lab.storage, runner, publish)
    if driver == "lio":
        return LioDriver(lab.storage, runner, publish)
    return IetDriver(lab.storage, runner, publish)


def initiator_driver(
    lab: LabConfig, runners: Mapping[str, HostRunner], publish: Publish
) -> InitiatorDriver:
    """open-iscsi on Xen hosts; for QEMU, its built-in initiator (checked with libiscsi)."""
    if lab.hypervisor.driver == "xen":
        return OpenIscsiInitiator(lab.storage, runners, publish)
    return QemuIscsiInitiator(
        lab.storage, runners, publish, initiator_name=qemu_initiator_name(lab.guest.name)
    )
