"""Invite links: an owner lets someone without an account watch (or ask to control) one phone.

An invite is a random token shown once (only its SHA-256 is kept), for one phone, view-only or
control, with an expiry and a maximum number of uses, revocable at any time. Redeeming it on
`hello` counts one use; revoking it disconnects everyone who came in through it (the node
listens to the `revoked` event). Tokens start with `cpi_` so the authorizer can route them
without a lookup.

Where invites are kept is an `InviteStore`: in memory by default, in the control plane's
database when it is on (so they survive a restart). The store counts uses itself, in one
atomic step, so two racing redeems of the last use never both win.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloudphone.edge.audit import AuditLog
from cloudphone.edge.auth import AccessDenied, Authorizer, Principal
from pyee.asyncio import AsyncIOEventEmitter

log = logging.getLogger(__name__)

PREFIX = "cpi_"
KINDS = ("view", "control")
MAX_TTL_S = 7 * 86400
MAX_USES = 1000
MAX_LABEL = 40


class InviteError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Invite:
    invite_id: str
    instance: str
    kind: str  # "view" | "control"
    label: str
    created_by: str
    created_at: float
    expires_at: float
    max_uses: int
    digest: str = field(repr=False)
    uses: int = 0
    revoked: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.invite_id,
            "instance": self.instance,
            "kind": self.kind,
            "label": self.label,
            "createdBy": self.created_by,
            "expiresAt": round(self.expires_at, 3),
            "maxUses": self.max_uses,
            "uses": self.uses,
            "revoked": self.revoked,
        }


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def refusal(invite: Invite | None, instance: str, now: float) -> InviteError | None:
    """Why `invite` cannot be used for `instance` at `now` (None: it can). One rule for every
    store, so the codes a guest sees do not depend on where invites are kept."""
    if invite is None:
        return InviteError("invite-unknown", "this invite link is not valid")
    if invite.instance != instance:
        return InviteError("invite-wrong-phone", "this invite link is for another phone")
    if invite.revoked:
        return InviteError("invite-revoked", "this invite link was revoked")
    if now >= invite.expires_at:
        return InviteError("invite-expired", "this invite link has expired")
    if invite.uses >= invite.max_uses:
        return InviteError("invite-used-up", "this invite link has been used up")
    return None


class InviteStore(Protocol):
    """Where invites live. Implementations must make `use` atomic."""

    async def add(self, invite: Invite) -> None: ...

    async def get(self, invite_id: str) -> Invite | None: ...

    async def of_instance(self, instance: str) -> list[Invite]: ...

    async def use(self, token_digest: str, instance: str, now: float) -> Invite:
        """Count one use of the invite with this token digest, or raise the `refusal`."""
        ...

    async def revoke(self, invite_id: str) -> tuple[Invite, bool] | None:
        """Mark it revoked; the invite and whether it was not revoked before (None: unknown)."""
        ...


class MemoryInviteStore:
    """Invites in this process only (development mode): lost on restart."""

    def __init__(self) -> None:
        self._by_id: dict[str, Invite] = {}
        self._by_digest: dict[str, Invite] = {}

    async def add(self, invite: Invite) -> None:
        self._by_id[invite.invite_id] = invite
        self._by_digest[invite.digest] = invite

    async def get(self, invite_id: str) -> Invite | None:
        return self._by_id.get(invite_id)

    async def of_instance(self, instance: str) -> list[Invite]:
        return [i for i in self._by_id.values() if i.instance == instance]

    async def use(self, token_digest: str, instance: str, now: float) -> Invite:
        # No await between the check and the count: atomic on the event loop.
        invite = self._by_digest.get(token_digest)
        problem = refusal(invite, instance, now)
        if problem is not None:
            raise problem
        assert invite is not None
        invite.uses += 1
        return invite

    async def revoke(self, invite_id: str) -> tuple[Invite, bool] | None:
        invite = self._by_id.get(invite_id)
        if invite is None:
            return None
        fresh = not invite.revoked
        invite.revoked = True
        return invite, fresh


class InviteBook:
    """All invites of this edge: checks requests, makes tokens, tells who was revoked.
    `events` emits `revoked` (Invite)."""

    def __init__(
        self, store: InviteStore | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store: InviteStore = store or MemoryInviteStore()
        self.clock = clock
        self.events = AsyncIOEventEmitter()

    async def create(
        self,
        instance: str,
        *,
        kind: object,
        label: object,
        ttl_s: object,
        max_uses: object,
        created_by: str,
    ) -> tuple[Invite, str]:
        """A new invite and its token (returned once, never stored in clear). Arguments come
        straight from JSON, so each is type-checked here."""
        if not isinstance(kind, str) or kind not in KINDS:
            raise InviteError("bad-invite", "kind must be view or control")
        label = label.strip() if isinstance(label, str) else ""
        if not 1 <= len(label) <= MAX_LABEL or not label.isprintable():
            raise InviteError("bad-invite", f"label must be 1..{MAX_LABEL} printable characters")
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
            raise InviteError("bad-invite", "ttl must be a number of seconds")
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise InviteError("bad-invite", f"ttl must be 1..{MAX_TTL_S} seconds")
        if isinstance(max_uses, bool) or not isinstance(max_uses, int):
            raise InviteError("bad-invite", "maxUses must be an integer")
        if not 1 <= max_uses <= MAX_USES:
            raise InviteError("bad-invite", f"maxUses must be 1..{MAX_USES}")
        token = PREFIX + secrets.token_urlsafe(24)
        now = self.clock()
        invite = Invite(
            invite_id=secrets.token_hex(6),
            instance=instance,
            kind=kind,
            label=label,
            created_by=created_by,
            created_at=now,
            expires_at=now + ttl_s,
            max_uses=max_uses,
            digest=digest(token),
        )
        await self.store.add(invite)
        return invite, token

    async def get(self, invite_id: str) -> Invite | None:
        return await self.store.get(invite_id)

    async def of_instance(self, instance: str) -> list[Invite]:
        return await self.store.of_instance(instance)

    async def redeem(self, token: str, instance: str) -> Invite:
        """Count one use of `token` for `instance`, or say exactly why not."""
        return await self.store.use(digest(token), instance, self.clock())

    async def revoke(self, invite_id: str) -> Invite:
        result = await self.store.revoke(invite_id)
        if result is None:
            raise InviteError("invite-unknown", f"no invite {invite_id!r}")
        invite, fresh = result
        if fresh:
            self.events.emit("revoked", invite)
        return invite


class InviteAuthorizer:
    """Routes `cpi_` tokens to the invite book and everything else to the inner authorizer.

    An invite always grants the viewer role; a control invite only makes its holder eligible
    to be granted control by the controller or the owner. Each use, and each refused try, goes
    to the audit log when one is given."""

    def __init__(
        self, invites: InviteBook, inner: Authorizer, audit: AuditLog | None = None
    ) -> None:
        self.invites = invites
        self.inner = inner
        self.audit = audit

    async def authorize(self, token: str | None, instance: str, role: str) -> Principal:
        if token and token.startswith(PREFIX):
            try:
                invite = await self.invites.redeem(token, instance)
            except InviteError as exc:
                # A real link refused is worth keeping; guessed tokens would only fill the log.
                if self.audit is not None and exc.code != "invite-unknown":
                    self.audit.record("invite/refused", phone=instance, actor="guest-link",
                                      reason=exc.code)  # fmt: skip
                log.info("invite refused for %s: %s", instance, exc.code)
                code = "forbidden" if exc.code == "invite-wrong-phone" else "unauthorized"
                raise AccessDenied(code, exc.message) from None
            if self.audit is not None:
                self.audit.record("invite/use", phone=instance, actor=invite.label,
                                  invite=invite.invite_id, uses=invite.uses,
                                  maxUses=invite.max_uses)  # fmt: skip
            return Principal(
                name=invite.label,
                role="viewer",
                kind="guest-link",
                invite=invite.invite_id,
                can_control=invite.kind == "control",
            )
        return await self.inner.authorize(token, instance, role)
