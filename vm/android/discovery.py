"""Device discovery: follow the adb server's device list and keep one pool guest per phone.

Racks and emulator farms add and drop devices all day. `host:track-devices` pushes the whole
list on every change, so the edge needs no polling: a configured serial (or, with no list,
every device) that comes online gets an `AndroidGuest` in the pool. A device that goes away
keeps its guest: the guest itself says RESTARTING and reconnects with back-off when the device
returns, so viewers are not dropped for a cable wiggle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Collection, Mapping
from typing import Any

from cloudphone.vm.android.adb import AdbClient, AdbError, DeviceInfo
from cloudphone.vm.guest import GuestError
from cloudphone.vm.pool import GuestSpec, InstancePool

log = logging.getLogger(__name__)


def guest_id_for(serial: str, prefix: str = "android-") -> str:
    """A URL-safe instance id for a serial ("emulator-5554", "192.168.1.7:5555")."""
    return prefix + re.sub(r"[^A-Za-z0-9_.-]", "-", serial)


class AndroidDiscovery:
    """Creates pool guests for devices as the adb server reports them. `start()`, `close()`."""

    def __init__(
        self,
        pool: InstancePool,
        options: Mapping[str, Any],
        *,
        serials: Collection[str] | None = None,
        prefix: str = "android-",
        retry_s: float = 2.0,
    ) -> None:
        """`options`: the `AndroidOptions` every guest gets (adb address, jar, version ...)
        without `serial`; `serials`: only these devices (None = every device)."""
        self.pool = pool
        self.options = dict(options)
        self.serials = set(serials) if serials is not None else None
        self.prefix = prefix
        self.retry_s = retry_s
        self.adb = AdbClient(str(self.options.get("adb", "tcp:127.0.0.1:5037")))
        self.devices: list[DeviceInfo] = []
        self._task: asyncio.Task[None] | None = None
        self._creating: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="android-discovery")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._creating) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def _follow(self) -> None:
        while True:
            try:
                async for devices in self.adb.track_devices():
                    self.devices = devices
                    self._on_devices(devices)
                    self.changed.set()
            except AdbError as exc:
                log.warning("android discovery: %s; retrying in %.0f s", exc, self.retry_s)
            await asyncio.sleep(self.retry_s)

    def _on_devices(self, devices: list[DeviceInfo]) -> None:
        for device in devices:
            if device.state != "device":
                continue
            if self.serials is not None and device.serial not in self.serials:
                continue
            guest_id = guest_id_for(device.serial, self.prefix)
            if guest_id in self.pool or any(t.get_name() == guest_id for t in self._creating):
                continue
            task = asyncio.create_task(self._create(guest_id, device.serial), name=guest_id)
            self._creating.add(task)
            task.add_done_callback(self._creating.discard)

    async def _create(self, guest_id: str, serial: str) -> None:
        spec = GuestSpec("android", options={**self.options, "serial": serial})
        try:
            await self.pool.create(guest_id, spec)
            log.info("android discovery: %s is %s", serial, guest_id)
        except (GuestError, ValueError) as exc:
            log.error("android discovery: cannot attach %s: %s", serial, exc)
        finally:
            self.changed.set()
