"""Android guests over ADB: scrcpy-server's H.264 passed through to viewers, no edge encode."""

from __future__ import annotations

from cloudphone.vm.guest import Guest
from cloudphone.vm.pool import GuestSpec, InstancePool


def register(pool: InstancePool) -> None:
    """Make `GuestSpec(kind="android", options={...})` build an `AndroidGuest`."""
    from cloudphone.vm.android.guest import AndroidGuest

    def factory(guest_id: str, spec: GuestSpec) -> Guest:
        if spec.options.get("mode") == "screenrecord":
            from cloudphone.vm.android.screenrecord import ScreenrecordGuest

            return ScreenrecordGuest.from_spec(guest_id, spec)
        return AndroidGuest.from_spec(guest_id, spec)

    pool.register_kind("android", factory)
