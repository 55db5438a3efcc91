"""Who may open which phone in which role, asked by the signaling server on every `hello`.

The edge only needs the answer; where it comes from (development mode, admin tokens, the
control plane's short-lived connect tokens) is pluggable, so signaling never learns about users.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a token, as far as the edge is concerned."""

    name: str
    role: str  # the role granted, which may be lower than the one asked for
    kind: str = "user"  # "user", "admin", "guest-link", "dev"
    invite: str | None = None  # the invite id a guest-link principal came in with
    # May this caller be granted control? Owners and control invites: yes; view invites: no.
    can_control: bool = True


class AccessDenied(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # "unauthorized" (no/bad token) or "forbidden" (not this phone)
        self.message = message


class Authorizer(Protocol):
    async def authorize(self, token: str | None, instance: str, role: str) -> Principal: ...


class DevelopmentAuthorizer:
    """Development mode: anyone on the network may open any phone (say so loudly at start)."""

    async def authorize(self, token: str | None, instance: str, role: str) -> Principal:
        return Principal(name="developer", role=role, kind="dev")


class AdminTokenAuthorizer:
    """Only holders of the admin token; chained before the control plane's authorizer."""

    def __init__(self, token: str, fallback: Authorizer | None = None) -> None:
        self._token = token
        self._fallback = fallback

    async def authorize(self, token: str | None, instance: str, role: str) -> Principal:
        if token and hmac.compare_digest(token, self._token):
            return Principal(name="admin", role=role, kind="admin")
        if self._fallback is not None:
            return await self._fallback.authorize(token, instance, role)
        raise AccessDenied("unauthorized", "a valid token is required")
