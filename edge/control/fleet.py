"""Turns control-plane decisions into instance-pool actions for the phones of this edge node.

The store says what each phone should be; the fleet makes the pool agree. Pool failures after a
committed decision are logged, not raised: the decision stands and `reconcile` repairs the pool
at the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from cloudphone.edge.control.config import ControlConfig, Flavor
from cloudphone.vm.guest import GuestEventName, GuestState
from cloudphone.vm.pool import GuestSpec, InstancePool

log = logging.getLogger(__name__)


def spec_for(flavor: Flavor) -> GuestSpec:
    options = dict(flavor.guest_options)
    options.setdefault("codec", flavor.codec)
    options.setdefault("max_bitrate_kbps", flavor.max_bitrate_kbps)
    return GuestSpec(
        kind=flavor.guest_kind,
        width=flavor.width,
        height=flavor.height,
        fps=flavor.fps,
        options=options,
    )


Disconnect = Callable[[str, str], Awaitable[None]]


class Fleet:
    """The control plane's only door to the instance pool (and to the edge's viewers).

    A released phone's viewers learn why from the pool's `removed` event; a phone that is only
    stopped (frozen, expired, taken from its user) stays in the pool, so the edge's `disconnect`
    hook tells its viewers instead.
    """

    def __init__(
        self, pool: InstancePool, config: ControlConfig, disconnect: Disconnect | None = None
    ) -> None:
        self.pool = pool
        self.config = config
        self.disconnect = disconnect

    async def create_all(self, ids: list[str], flavor: Flavor) -> None:
        """Create and start every guest, or none: on any failure the created ones are removed."""
        spec = spec_for(flavor)
        created: list[str] = []
        try:
            async with asyncio.timeout(flavor.start_timeout_s or self.config.start_timeout_s):
                for guest_id in ids:
                    created.append(guest_id)
                    await self.pool.create(guest_id, spec)
                await self._wait_running(ids)
        except BaseException:
            for guest_id in created:
                if guest_id in self.pool:
                    await self.remove(guest_id, "order could not be fulfilled")
            raise

    async def _wait_running(self, ids: Iterable[str]) -> None:
        for guest_id in ids:
            guest = self.pool.get(guest_id)
            ready = asyncio.Event()

            def on_state(state: GuestState, ready: asyncio.Event = ready) -> None:
                if state == GuestState.RUNNING:
                    ready.set()

            guest.events.on(GuestEventName.STATE, on_state)
            try:
                if guest.state != GuestState.RUNNING:
                    await ready.wait()
            finally:
                guest.events.remove_listener(GuestEventName.STATE, on_state)

    async def stop(self, guest_id: str, reason: str = "stopped") -> None:
        try:
            if self.disconnect is not None:
                await self.disconnect(guest_id, reason)
            await self.pool.stop(guest_id)
        except Exception:
            log.exception("stopping %s failed", guest_id)

    async def start(self, guest_id: str, flavor: Flavor | None = None) -> None:
        try:
            if guest_id not in self.pool and flavor is not None:
                await self.pool.create(guest_id, spec_for(flavor))
            else:
                await self.pool.start(guest_id)
        except Exception:
            log.exception("starting %s failed", guest_id)

    async def restart(self, guest_id: str) -> None:
        await self.pool.restart(guest_id)

    async def remove(self, guest_id: str, reason: str) -> None:
        try:
            if guest_id in self.pool:
                await self.pool.remove(guest_id, reason=reason)
        except Exception:
            log.exception("releasing %s failed", guest_id)

    async def ensure(self, guest_id: str, flavor: Flavor, running: bool) -> None:
        """Make the pool hold `guest_id`, running or stopped (used after a restart of the edge)."""
        try:
            if guest_id not in self.pool:
                await self.pool.create(guest_id, spec_for(flavor), start=running)
            elif running:
                await self.pool.start(guest_id)
            else:
                await self.pool.stop(guest_id)
        except Exception:
            log.exception("restoring %s failed", guest_id)
