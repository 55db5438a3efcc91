"""Login and the user's own side of the API (`/auth/*`, `/me/*`).

Cookies: the session (`cp_session`, path /) and the trusted-browser token (`cp_device`, sent only
to /api/v1/auth) are HttpOnly and SameSite=Strict, and Secure when the page came over TLS.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from cloudphone.edge.control.errors import ControlError, not_found
from cloudphone.edge.control.httputil import (
    DEVICE_COOKIE,
    PLANE_KEY,
    SESSION_COOKIE,
    access,
    caller,
    int_path,
    json_body,
)
from cloudphone.edge.control.login import Challenge, Granted, Session, me_dict

routes = web.RouteTableDef()


def _client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


def _session_reply(request: web.Request, granted: Granted) -> web.Response:
    plane = request.app[PLANE_KEY]
    session = Session("", granted.user, granted.csrf, granted.expires_at)
    resp = web.json_response({"status": "session", **me_dict(session)})
    secure = request.secure
    resp.set_cookie(
        SESSION_COOKIE,
        granted.token,
        httponly=True,
        samesite="Strict",
        secure=secure,
        path="/",
        max_age=plane.config.session_ttl_s,
    )
    if granted.device_token is not None:
        resp.set_cookie(
            DEVICE_COOKIE,
            granted.device_token,
            httponly=True,
            samesite="Strict",
            secure=secure,
            path="/api/v1/auth",
            max_age=plane.config.device_ttl_s,
        )
    return resp


@routes.post("/auth/login")
@access("public")
async def post_login(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    body = await json_body(request)
    result = await plane.logins.login(
        body.get("account"),
        body.get("password"),
        _client_ip(request),
        request.cookies.get(DEVICE_COOKIE),
    )
    if isinstance(result, Challenge):
        return web.json_response(
            {
                "status": "challenge",
                "challenge": result.id,
                "expires_at": result.expires_at,
                "sent_to": result.sent_to,
            }
        )
    return _session_reply(request, result)


@routes.post("/auth/verify")
@access("public")
async def post_verify(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    body = await json_body(request)
    granted = await plane.logins.verify(
        body.get("challenge"),
        body.get("code"),
        body.get("trust_browser", False),
        _client_ip(request),
        request.headers.get("User-Agent", ""),
    )
    return _session_reply(request, granted)


def _session_of(request: web.Request) -> Session:
    session = caller(request).session
    if session is None:
        raise ControlError(403, "forbidden", "this needs a user login, not an admin token")
    return session


@routes.get("/auth/session")
@access("user")
async def get_session(request: web.Request) -> web.Response:
    return web.json_response(me_dict(_session_of(request)))


@routes.post("/auth/logout")
@access("user")
async def post_logout(request: web.Request) -> web.Response:
    await request.app[PLANE_KEY].logins.logout(_session_of(request))
    resp = web.json_response({"status": "logged_out"})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


@routes.post("/auth/password")
@access("user")
async def post_password(request: web.Request) -> web.Response:
    """Change one's own password; every session ends, so the browser logs in again."""
    body = await json_body(request)
    session = _session_of(request)
    await request.app[PLANE_KEY].logins.change_password(
        session.user, body.get("old_password"), body.get("new_password")
    )
    resp = web.json_response({"status": "logged_out"})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


@routes.get("/me/phones")
@access("user")
async def get_my_phones(request: web.Request) -> web.Response:
    phones = await request.app[PLANE_KEY].directory.user_phones(caller(request).user_id)
    return web.json_response({"count": len(phones), "phones": phones})


@routes.post("/me/phones/{id}/connect")
@access("user")
async def post_connect(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    user_id = caller(request).user_id
    phone_id = request.match_info["id"]
    mine = {p["id"]: p for p in await plane.directory.user_phones(user_id)}
    phone: dict[str, Any] | None = mine.get(phone_id)
    if phone is None:
        raise ControlError(403, "forbidden", "this phone is not bound to you")
    if not phone["usable"]:
        raise ControlError(409, "phone_unavailable", f"this phone is {phone['state']}")
    token, expires = plane.tokens.issue(user_id, phone_id)
    return web.json_response(
        {
            "token": token,
            "expires_at": expires,
            "instance": phone_id,
            "signaling": "/ws",
            "player": f"/phone/{phone_id}",
        }
    )


@routes.get("/me/devices")
@access("user")
async def get_my_devices(request: web.Request) -> web.Response:
    devices = await request.app[PLANE_KEY].logins.devices(caller(request).user_id)
    return web.json_response({"devices": devices})


@routes.delete("/me/devices/{id}")
@access("user")
async def delete_my_device(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    revoked = await plane.logins.revoke_devices(caller(request).user_id, int_path(request))
    if not revoked:
        raise not_found("device", request.match_info["id"])
    return web.json_response({"revoked": revoked})
