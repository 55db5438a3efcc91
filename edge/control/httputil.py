"""Shared pieces of the /api/v1 handlers: who is calling, access levels, JSON in and out.

Every handler declares its access level with `@access(...)`; the middleware resolves the caller
(admin bearer token or login session cookie), enforces the level and, for cookie-authenticated
writes, the CSRF header. Handlers without a declared level are admin-only.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiohttp import web
from cloudphone.edge.control.errors import ControlError, bad_request
from cloudphone.edge.control.login import Session
from cloudphone.edge.control.plane import ControlPlane

Access = Literal["public", "admin", "user", "any"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

SESSION_COOKIE = "cp_session"
DEVICE_COOKIE = "cp_device"
CSRF_HEADER = "X-CSRF-Token"
PLANE_KEY = web.AppKey("control_plane", ControlPlane)


def access(level: Access) -> Callable[[H], H]:
    def mark(handler: H) -> H:
        handler.access = level  # type: ignore[attr-defined]
        return handler

    return mark


def access_of(handler: object) -> Access:
    return getattr(handler, "access", "admin")


@dataclass(frozen=True, slots=True)
class Caller:
    """An admin token holder (no user) or a logged-in user (with their session)."""

    role: str  # "admin" or "user"
    session: Session | None = None

    @property
    def user_id(self) -> int:
        if self.session is None:
            raise ControlError(403, "forbidden", "this needs a user login, not an admin token")
        return int(self.session.user["id"])


CALLER_KEY = web.RequestKey("control_caller", Caller)


def caller(request: web.Request) -> Caller:
    return request[CALLER_KEY]


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("invalid_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise bad_request("invalid_json", "the body must be a JSON object")
    return body


def int_query(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request("invalid_query", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise bad_request("invalid_query", f"{name} must be within {lo}..{hi}")
    return value


def int_path(request: web.Request, name: str = "id") -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise ControlError(404, "not_found", f"no such {name}") from None
