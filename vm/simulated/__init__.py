"""The embedded simulated phone, the default guest of `cloudphone serve`."""

from __future__ import annotations

from cloudphone.vm.pool import GuestSpec
from cloudphone.vm.simulated.phone import SimulatedPhone


def create_simulated_phone(guest_id: str, spec: GuestSpec) -> SimulatedPhone:
    """Pool factory for `kind="simulated"`; `options["stamp"]` turns the latency probe on."""
    return SimulatedPhone(
        guest_id,
        width=spec.width,
        height=spec.height,
        fps=spec.fps,
        stamp=bool(spec.options.get("stamp", False)),
    )


__all__ = ["SimulatedPhone", "create_simulated_phone"]
