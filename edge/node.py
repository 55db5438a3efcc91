"""The edge node: the instance pool's guests, their pipelines, rooms and live viewer sessions.

It follows the pool: a guest added gets a pipeline and a room, a guest removed has its viewers
told why and disconnected, then its pipeline closed. Sessions are created here so that the
signaling server never touches pipelines or guests directly. The node also holds what sharing
and security need across phones: the policy book, the invite book and the audit log; revoking
an invite disconnects everyone who came in through it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets

from cloudphone.edge.audit import AuditLog
from cloudphone.edge.auth import AccessDenied, Principal
from cloudphone.edge.pipeline import EncoderSettings, Pipeline
from cloudphone.edge.policy import PolicyBook
from cloudphone.edge.session import PeerSession, SessionOptions
from cloudphone.edge.sharing.invites import Invite, InviteBook
from cloudphone.edge.sharing.room import Room
from cloudphone.vm.guest import Guest
from cloudphone.vm.pool import InstancePool, UnknownGuest

log = logging.getLogger(__name__)


class EdgeNode:
    def __init__(
        self,
        pool: InstancePool,
        settings: EncoderSettings | None = None,
        *,
        policies: PolicyBook | None = None,
        invites: InviteBook | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings or EncoderSettings()
        self.policies = policies or PolicyBook()
        self.invites = invites or InviteBook()
        self.audit = audit or AuditLog()
        self.pipelines: dict[str, Pipeline] = {}
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[str, PeerSession] = {}
        self._started = False
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.pool.events.on("added", self._on_guest_added)
        self.pool.events.on("removed", self._on_guest_removed)
        self.invites.events.on("revoked", self._on_invite_revoked)
        for guest in self.pool:
            self._on_guest_added(guest)

    def _on_guest_added(self, guest: Guest) -> None:
        if guest.guest_id not in self.pipelines:
            self.pipelines[guest.guest_id] = Pipeline(guest, self.settings)
            instance = guest.guest_id
            self.rooms[instance] = Room(
                instance,
                guest,
                lambda: self.policies.for_phone(instance),
                self.invites,
                self.audit,
            )

    async def _on_guest_removed(self, guest_id: str, reason: str) -> None:
        await self.disconnect_instance(guest_id, reason)
        room = self.rooms.pop(guest_id, None)
        if room is not None:
            await room.close()
        pipeline = self.pipelines.pop(guest_id, None)
        if pipeline is not None:
            await pipeline.close()

    def pipeline(self, instance: str) -> Pipeline:
        try:
            return self.pipelines[instance]
        except KeyError:
            raise UnknownGuest(instance) from None

    def admit(self, instance: str, address: str) -> None:
        """Refuse a client whose address the phone's policy does not allow."""
        if not self.policies.for_phone(instance).address_allowed(address):
            self.audit.record("session/refused", phone=instance, actor=address,
                              reason="address not allowed")  # fmt: skip
            raise AccessDenied("forbidden", f"connections from {address} are not allowed here")

    async def open_session(
        self,
        instance: str,
        role: str | Principal,
        options: SessionOptions,
    ) -> PeerSession:
        """A new viewer of `instance`; its offer is built by the caller (`session.offer()`)."""
        pipeline = self.pipeline(instance)
        principal = role if isinstance(role, Principal) else Principal(role, role, kind="dev")
        room = self.rooms[instance]
        mark = room.mark_for(principal.name)
        if mark is not None:
            options = dataclasses.replace(options, watermark=mark)
        session_id = secrets.token_urlsafe(9)
        session = PeerSession(
            session_id,
            pipeline,
            principal.role,
            options,
            on_closed=self._forget,
            identity=principal,
            room=room,
        )
        self.sessions[session_id] = session
        room.join(session)
        return session

    def _forget(self, session: PeerSession, reason: str) -> None:
        self.sessions.pop(session.session_id, None)

    def sessions_of(self, instance: str) -> list[PeerSession]:
        return [s for s in self.sessions.values() if s.guest.guest_id == instance]

    def _on_invite_revoked(self, invite: Invite) -> None:
        for session in list(self.sessions.values()):
            if session.identity.invite == invite.invite_id:
                task = asyncio.ensure_future(session.close("invite revoked"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def disconnect_instance(self, instance: str, reason: str) -> None:
        """Close every session of one phone (released, frozen, deleted), telling why."""
        sessions = self.sessions_of(instance)
        await asyncio.gather(*(s.close(reason) for s in sessions), return_exceptions=True)

    async def close_sessions(self, reason: str) -> None:
        """Close every session, so their last audit entries are written before the stores
        behind the audit log close."""
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.close(reason) for s in sessions), return_exceptions=True)

    async def close(self) -> None:
        self.pool.events.remove_listener("added", self._on_guest_added)
        self.pool.events.remove_listener("removed", self._on_guest_removed)
        self.invites.events.remove_listener("revoked", self._on_invite_revoked)
        await self.close_sessions("edge shutting down")
        rooms, self.rooms = list(self.rooms.values()), {}
        await asyncio.gather(*(r.close() for r in rooms), return_exceptions=True)
        pipelines, self.pipelines = list(self.pipelines.values()), {}
        await asyncio.gather(*(p.close() for p in pipelines), return_exceptions=True)
        await self.audit.close()
