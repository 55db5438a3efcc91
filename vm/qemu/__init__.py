"""QEMU guests: a virtual machine per instance, captured over VNC, driven over QMP.

`register(pool)` adds the "qemu" kind to an `InstancePool`. Modules: `process` (spawn, QMP,
stop, the multi-touch probe), `rfb` (VNC capture), `dbus_display` (D-Bus p2p display
capture), `keymap` (key input translation), `multitouch` (fingers to QEMU >= 8.1 multi-touch
slots), `guest` (`QemuGuest`), `image` (the recipe guest: Debian kernel + busybox initramfs +
`phone.c`).
"""

from __future__ import annotations

from cloudphone.vm.pool import InstancePool
from cloudphone.vm.qemu.guest import QemuGuest, RestartPolicy, qemu_guest_factory
from cloudphone.vm.qemu.process import QemuConfig, QemuProcess

__all__ = [
    "QemuConfig",
    "QemuGuest",
    "QemuProcess",
    "RestartPolicy",
    "qemu_guest_factory",
    "register",
]


def register(pool: InstancePool) -> None:
    """Let `pool` create guests of kind "qemu"."""
    pool.register_kind("qemu", qemu_guest_factory)
