"""The real lab on one Linux machine: guest images, namespaces, daemons (`miglab sandbox`)."""

from backend.sandbox.guest_image import (
    DEFAULT_MODULES,
    HEARTBEAT_MARKER,
    READY_MARKER,
    GuestImage,
    GuestImageError,
    build_guest_image,
    default_cache_dir,
    fetch_packages,
    wait_for_console,
)
from backend.sandbox.initramfs import Initramfs, InitramfsError, shared_libraries
from backend.sandbox.layout import SandboxLayout, default_sandbox_dir
from backend.sandbox.local_qemu import LocalQemu
from backend.sandbox.sandbox import (
    PreflightFailed,
    Sandbox,
    SandboxBusy,
    SandboxError,
    SandboxStatus,
)

__all__ = [
    "DEFAULT_MODULES",
    "HEARTBEAT_MARKER",
    "READY_MARKER",
    "GuestImage",
    "GuestImageError",
    "Initramfs",
    "InitramfsError",
    "LocalQemu",
    "PreflightFailed",
    "Sandbox",
    "SandboxBusy",
    "SandboxError",
    "SandboxLayout",
    "SandboxStatus",
    "build_guest_image",
    "default_cache_dir",
    "default_sandbox_dir",
    "fetch_packages",
    "shared_libraries",
    "wait_for_console",
]
