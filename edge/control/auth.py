"""Admin API tokens: random, shown once, kept only as a SHA-256 hash in the store.

Until user logins exist every `/api/v1` call needs `Authorization: Bearer <admin token>`. A token
comes from configuration or from `cloudphone admin token`, which stores the hash of a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cloudphone.edge.control.store import Store

SETTING = "admin_token_sha256"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_admin_token(store: Store) -> str:
    """Make a new admin token, replacing the stored one; return it (it is not kept in clear)."""
    token = "cpa_" + secrets.token_urlsafe(32)
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (SETTING, _digest(token)),
        )
    return token


class AdminAuth:
    """Checks bearer tokens against the configured token and the stored hash."""

    def __init__(self, store: Store, configured: str | None) -> None:
        self.store = store
        self.configured = configured

    async def check(self, token: str) -> bool:
        if not token:
            return False
        if self.configured and hmac.compare_digest(token.encode(), self.configured.encode()):
            return True
        async with self.store.transaction() as tx:
            row = await tx.fetchone("SELECT value FROM settings WHERE key = ?", (SETTING,))
        return row is not None and hmac.compare_digest(_digest(token), row["value"])
