"""The real lab on one Linux machine: guest images, and (later) namespaces and services."""

from backend.sandbox.guest_image import (
    DEFAULT_MODULES,
    HEARTBEAT_MARKER,
    READY_MARKER,
    GuestImage,
    GuestImageError,
    build_guest_image,
    default_cache_dir,
    kernel_cmdline,
    qemu_guest_argv,
    wait_for_console,
)
from backend.sandbox.initramfs import Initramfs, InitramfsError, shared_libraries
from backend.sandbox.local_qemu import LocalQemu

__all__ = [
    "DEFAULT_MODULES",
    "HEARTBEAT_MARKER",
    "READY_MARKER",
    "GuestImage",
    "GuestImageError",
    "Initramfs",
    "InitramfsError",
    "LocalQemu",
    "build_guest_image",
    "default_cache_dir",
    "kernel_cmdline",
    "qemu_guest_argv",
    "shared_libraries",
    "wait_for_console",
]
