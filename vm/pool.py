"""The instance pool: every guest this edge node hosts, by id, created from a spec.

The control plane (orders, assignment) and the CLI only talk to the pool; the edge listens to
its `added` / `removed` events to build and tear down pipelines and to disconnect viewers.
Guest kinds register a factory, so the pool itself knows nothing of QEMU or ADB.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cloudphone.vm.guest import Guest, GuestError, GuestState
from pyee.asyncio import AsyncIOEventEmitter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GuestSpec:
    """How to build one guest: its kind, screen, and kind-specific options."""

    kind: str = "simulated"
    width: int = 720
    height: int = 1280
    fps: int = 30
    options: Mapping[str, Any] = field(default_factory=dict)


GuestFactory = Callable[[str, GuestSpec], Guest]


class UnknownGuest(KeyError):
    """No guest with that id lives in this pool."""


class InstancePool:
    """Creates, starts, stops and removes guests.

    Emits `added` (Guest) and `removed` (guest id, reason).
    """

    def __init__(self) -> None:
        self.events = AsyncIOEventEmitter()
        self._factories: dict[str, GuestFactory] = {}
        self._guests: dict[str, Guest] = {}
        self._specs: dict[str, GuestSpec] = {}
        self._lock = asyncio.Lock()

    def register_kind(self, kind: str, factory: GuestFactory) -> None:
        self._factories[kind] = factory

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def get(self, guest_id: str) -> Guest:
        try:
            return self._guests[guest_id]
        except KeyError:
            raise UnknownGuest(guest_id) from None

    def spec(self, guest_id: str) -> GuestSpec:
        self.get(guest_id)
        return self._specs[guest_id]

    def __contains__(self, guest_id: object) -> bool:
        return guest_id in self._guests

    def __iter__(self) -> Iterator[Guest]:
        return iter(list(self._guests.values()))

    def __len__(self) -> int:
        return len(self._guests)

    async def create(self, guest_id: str, spec: GuestSpec, *, start: bool = True) -> Guest:
        """Build a guest (and start it unless `start=False`). Ids are unique per pool."""
        async with self._lock:
            if guest_id in self._guests:
                raise GuestError(f"guest {guest_id!r} already exists")
            factory = self._factories.get(spec.kind)
            if factory is None:
                raise GuestError(
                    f"unknown guest kind {spec.kind!r}; have {sorted(self._factories)}"
                )
            guest = factory(guest_id, spec)
            self._guests[guest_id] = guest
            self._specs[guest_id] = spec
        self.events.emit("added", guest)
        if start:
            try:
                await guest.start()
            except Exception:
                await self.remove(guest_id, reason="failed to start")
                raise
        return guest

    async def start(self, guest_id: str) -> None:
        guest = self.get(guest_id)
        if guest.state in (GuestState.STOPPED, GuestState.FAILED):
            await guest.start()

    async def stop(self, guest_id: str) -> None:
        guest = self.get(guest_id)
        if guest.state != GuestState.STOPPED:
            await guest.stop()

    async def restart(self, guest_id: str) -> None:
        await self.stop(guest_id)
        await self.start(guest_id)

    async def remove(self, guest_id: str, *, reason: str = "released") -> None:
        """Stop the guest, forget it, and tell listeners (viewers are told `reason`)."""
        guest = self._guests.get(guest_id)
        if guest is None:
            raise UnknownGuest(guest_id)
        try:
            if guest.state != GuestState.STOPPED:
                await guest.stop()
        finally:
            self._guests.pop(guest_id, None)
            self._specs.pop(guest_id, None)
            self.events.emit("removed", guest_id, reason)

    async def close(self) -> None:
        for guest_id in list(self._guests):
            try:
                await self.remove(guest_id, reason="edge shutting down")
            except Exception:  # one bad guest must not keep the others running
                log.exception("stopping %s failed", guest_id)
