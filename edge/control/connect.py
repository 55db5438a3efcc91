"""Short-lived signed connect tokens, and the authorizer the signaling server asks on `hello`.

A token names one user and one phone and expires within a minute; it is an HMAC over those
fields with a secret kept in the store, so any edge sharing the store can check it. Signing is
not enough: on every `hello` the phone must still be bound to that user and running.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cloudphone.edge.auth import AccessDenied, Authorizer, Principal
from cloudphone.edge.control.auth import AdminAuth
from cloudphone.edge.control.clock import Clock
from cloudphone.edge.control.phones import PhoneState
from cloudphone.edge.control.store import Store

SECRET_KEY = "connect_token_secret"
PREFIX = "cpc1"


class ConnectTokens:
    def __init__(self, store: Store, clock: Clock, ttl_s: int) -> None:
        self.store = store
        self.clock = clock
        self.ttl_s = ttl_s
        self._secret: bytes | None = None

    async def load(self) -> None:
        """Read the signing secret, creating it on first start."""
        async with self.store.transaction() as tx:
            row = await tx.fetchone("SELECT value FROM settings WHERE key = ?", (SECRET_KEY,))
            if row is None:
                value = secrets.token_hex(32)
                await tx.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?)", (SECRET_KEY, value)
                )
            else:
                value = row["value"]
        self._secret = bytes.fromhex(value)

    def _sign(self, body: str) -> str:
        assert self._secret is not None, "ConnectTokens.load() first"
        mac = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, user_id: int, phone_id: str) -> tuple[str, int]:
        expires = int(self.clock.now()) + self.ttl_s
        body = f"{PREFIX}.{user_id}.{phone_id}.{expires}"
        return f"{body}.{self._sign(body)}", expires

    def check(self, token: str) -> tuple[int, str]:
        """(user id, phone id) of a well-signed, unexpired token; AccessDenied otherwise.

        A token of our shape whose signature does not match was altered or made up by someone
        reaching for a phone: that is `forbidden`, like any other phone not theirs.
        """
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != PREFIX:
            raise AccessDenied("unauthorized", "the token is not a connect token")
        body, sig = ".".join(parts[:4]), parts[4]
        if not hmac.compare_digest(self._sign(body), sig):
            raise AccessDenied("forbidden", "the token was not issued for this")
        try:
            user_id, expires = int(parts[1]), int(parts[3])
        except ValueError:
            raise AccessDenied("forbidden", "the token was not issued for this") from None
        if expires <= int(self.clock.now()):
            raise AccessDenied("unauthorized", "the token expired; ask for a new one")
        return user_id, parts[2]


class ControlAuthorizer:
    """Admin tokens open any phone; connect tokens open the one phone bound to their user.

    Phones the control plane does not know (created by the edge's own configuration) are left
    to `fallback`, the edge's own policy; phones it sold never are.
    """

    def __init__(
        self,
        store: Store,
        tokens: ConnectTokens,
        admin: AdminAuth,
        fallback: Authorizer | None = None,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.admin = admin
        self.fallback = fallback

    async def authorize(self, token: str | None, instance: str, role: str) -> Principal:
        if token and not token.startswith(PREFIX + ".") and await self.admin.check(token):
            return Principal(name="admin", role=role, kind="admin")
        if self.fallback is not None:
            async with self.store.transaction() as tx:
                managed = await tx.fetchone("SELECT 1 AS x FROM phones WHERE id = ?", (instance,))
            if managed is None:
                return await self.fallback.authorize(token, instance, role)
        if not token:
            raise AccessDenied("unauthorized", "a token is required")
        user_id, phone_id = self.tokens.check(token)
        if phone_id != instance:
            raise AccessDenied("forbidden", "this token is for another phone")
        async with self.store.transaction() as tx:
            row = await tx.fetchone("SELECT user_id, state FROM phones WHERE id = ?", (phone_id,))
        if row is None or row["user_id"] != user_id:
            raise AccessDenied("forbidden", "this phone is not bound to you")
        if row["state"] != PhoneState.RUNNING:
            raise AccessDenied("forbidden", f"this phone is {row['state']}")
        return Principal(name=f"user-{user_id}", role=role, kind="user")
