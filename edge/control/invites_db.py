"""Invite links in the control plane's store, so they survive an edge restart.

Implements the edge's `InviteStore`. A use is one conditional UPDATE (`uses < max_uses`, not
revoked, not expired) inside a write transaction, so racing redeems of the last use, even from
two processes sharing the database, never both win. Only the token's SHA-256 is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cloudphone.edge.control.store import Row, Store
from cloudphone.edge.sharing.invites import Invite, InviteError, refusal


def _invite(row: Row) -> Invite:
    return Invite(
        invite_id=row["id"],
        instance=row["phone_id"],
        kind=row["kind"],
        label=row["label"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        max_uses=row["max_uses"],
        digest=row["token_sha256"],
        uses=row["uses"],
        revoked=row["revoked_at"] is not None,
    )


class StoredInvites:
    """The `InviteStore` of the control plane."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def add(self, invite: Invite) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO invites (id, token_sha256, phone_id, kind, label, created_by,"
                " created_at, expires_at, max_uses, uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    invite.invite_id,
                    invite.digest,
                    invite.instance,
                    invite.kind,
                    invite.label,
                    invite.created_by,
                    invite.created_at,
                    invite.expires_at,
                    invite.max_uses,
                    invite.uses,
                ),
            )

    async def get(self, invite_id: str) -> Invite | None:
        async with self.store.transaction() as tx:
            row = await tx.fetchone("SELECT * FROM invites WHERE id = ?", (invite_id,))
        return _invite(row) if row is not None else None

    async def of_instance(self, instance: str) -> list[Invite]:
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT * FROM invites WHERE phone_id = ? ORDER BY created_at, id", (instance,)
            )
        return [_invite(r) for r in rows]

    async def use(self, token_digest: str, instance: str, now: float) -> Invite:
        async with self.store.transaction() as tx:
            counted = await tx.execute(
                "UPDATE invites SET uses = uses + 1 WHERE token_sha256 = ? AND phone_id = ?"
                " AND revoked_at IS NULL AND expires_at > ? AND uses < max_uses",
                (token_digest, instance, now),
            )
            row = await tx.fetchone("SELECT * FROM invites WHERE token_sha256 = ?", (token_digest,))
        invite = _invite(row) if row is not None else None
        if counted == 1 and invite is not None:
            return invite
        # Not counted: say why, with the same rule the in-memory store uses.
        raise refusal(invite, instance, now) or InviteError(
            "invite-used-up", "this invite link has been used up"
        )

    async def revoke(self, invite_id: str) -> tuple[Invite, bool] | None:
        async with self.store.transaction() as tx:
            fresh = await tx.execute(
                "UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (round(self.clock(), 3), invite_id),
            )
            row = await tx.fetchone("SELECT * FROM invites WHERE id = ?", (invite_id,))
        return (_invite(row), fresh == 1) if row is not None else None
