"""The edge node: the instance pool's guests, their pipelines, and the live viewer sessions.

It follows the pool: a guest added gets a pipeline, a guest removed has its viewers told why
and disconnected, then its pipeline closed. Sessions are created here so that the signaling
server never touches pipelines or guests directly.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from cloudphone.edge.pipeline import EncoderSettings, Pipeline
from cloudphone.edge.session import PeerSession, SessionOptions
from cloudphone.vm.guest import Guest
from cloudphone.vm.pool import InstancePool, UnknownGuest

log = logging.getLogger(__name__)


class EdgeNode:
    def __init__(self, pool: InstancePool, settings: EncoderSettings | None = None) -> None:
        self.pool = pool
        self.settings = settings or EncoderSettings()
        self.pipelines: dict[str, Pipeline] = {}
        self.sessions: dict[str, PeerSession] = {}
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.pool.events.on("added", self._on_guest_added)
        self.pool.events.on("removed", self._on_guest_removed)
        for guest in self.pool:
            self._on_guest_added(guest)

    def _on_guest_added(self, guest: Guest) -> None:
        if guest.guest_id not in self.pipelines:
            self.pipelines[guest.guest_id] = Pipeline(guest, self.settings)

    async def _on_guest_removed(self, guest_id: str, reason: str) -> None:
        await self.disconnect_instance(guest_id, reason)
        pipeline = self.pipelines.pop(guest_id, None)
        if pipeline is not None:
            await pipeline.close()

    def pipeline(self, instance: str) -> Pipeline:
        try:
            return self.pipelines[instance]
        except KeyError:
            raise UnknownGuest(instance) from None

    async def open_session(self, instance: str, role: str, options: SessionOptions) -> PeerSession:
        """A new viewer of `instance`; its offer is built by the caller (`session.offer()`)."""
        pipeline = self.pipeline(instance)
        session_id = secrets.token_urlsafe(9)
        session = PeerSession(session_id, pipeline, role, options, on_closed=self._forget)
        self.sessions[session_id] = session
        return session

    def _forget(self, session: PeerSession, reason: str) -> None:
        self.sessions.pop(session.session_id, None)

    def sessions_of(self, instance: str) -> list[PeerSession]:
        return [s for s in self.sessions.values() if s.guest.guest_id == instance]

    async def disconnect_instance(self, instance: str, reason: str) -> None:
        """Close every session of one phone (released, frozen, deleted), telling why."""
        sessions = self.sessions_of(instance)
        await asyncio.gather(*(s.close(reason) for s in sessions), return_exceptions=True)

    async def close(self) -> None:
        self.pool.events.remove_listener("added", self._on_guest_added)
        self.pool.events.remove_listener("removed", self._on_guest_removed)
        sessions = list(self.sessions.values())
        await asyncio.gather(
            *(s.close("edge shutting down") for s in sessions), return_exceptions=True
        )
        pipelines, self.pipelines = list(self.pipelines.values()), {}
        await asyncio.gather(*(p.close() for p in pipelines), return_exceptions=True)
