"""The REST API under `/api/v1`: JSON in and out, errors as `{"error": {"code", "message"}}`.

`setup_control(app, pool, store, config)` mounts it on the edge's aiohttp application and ties
the control plane's start and stop to the application's lifetime.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from cloudphone.edge.control.clock import Clock
from cloudphone.edge.control.config import ControlConfig
from cloudphone.edge.control.errors import ControlError, bad_request
from cloudphone.edge.control.fleet import Disconnect
from cloudphone.edge.control.httputil import (
    CALLER_KEY,
    CSRF_HEADER,
    PLANE_KEY,
    SESSION_COOKIE,
    Caller,
    Handler,
    access,
    access_of,
    error_response,
    int_query,
    json_body,
)
from cloudphone.edge.control.notifier import Sender
from cloudphone.edge.control.openapi import openapi_document
from cloudphone.edge.control.phones import PhoneState, as_dict
from cloudphone.edge.control.plane import ControlPlane
from cloudphone.edge.control.sqlite_store import SQLiteStore
from cloudphone.edge.control.store import Store
from cloudphone.edge.policy import PolicyBook
from cloudphone.vm.pool import InstancePool

log = logging.getLogger(__name__)

PREFIX = "/api/v1"


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal, including aiohttp's own 404/405/413, leaves as the JSON error shape."""
    try:
        return await handler(request)
    except ControlError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status, "http_error"
        )
        return error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal_error", "the control plane failed; see its log")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the caller, then enforce the handler's access level and CSRF for cookie writes."""
    level = access_of(request.match_info.handler)
    if level == "public":
        return await handler(request)
    plane = request.app[PLANE_KEY]
    who: Caller | None = None
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and await plane.auth.check(token.strip()):
            who = Caller("admin")
    else:
        session = await plane.logins.session(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            who = Caller(session.user["role"], session)
    if who is None:
        raise ControlError(401, "unauthorized", "log in, or send Authorization: Bearer <token>")
    if level == "admin" and who.role != "admin":
        raise ControlError(403, "forbidden", "this needs an administrator")
    if level == "user" and who.session is None:
        raise ControlError(403, "forbidden", "this needs a user login, not an admin token")
    if who.session is not None and request.method not in ("GET", "HEAD", "OPTIONS"):
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), who.session.csrf.encode()):
            raise ControlError(403, "csrf_failed", f"send the session's {CSRF_HEADER} header")
    request[CALLER_KEY] = who
    return await handler(request)


routes = web.RouteTableDef()


@routes.get("/openapi.json")
@access("public")
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


@routes.get("/regions")
async def get_regions(request: web.Request) -> web.Response:
    config = request.app[PLANE_KEY].config
    regions = []
    for region in config.regions:
        item = region.as_dict()
        item["zones"] = [{"name": z, "served": config.serves(z)} for z in region.zones]
        regions.append(item)
    return web.json_response({"regions": regions})


@routes.get("/flavors")
async def get_flavors(request: web.Request) -> web.Response:
    flavors = [f.as_dict() for f in request.app[PLANE_KEY].config.flavors]
    return web.json_response({"flavors": flavors})


@routes.get("/account")
async def get_account(request: web.Request) -> web.Response:
    return web.json_response(await request.app[PLANE_KEY].account())


@routes.post("/account/recharge")
async def post_recharge(request: web.Request) -> web.Response:
    body = await json_body(request)
    balance = await request.app[PLANE_KEY].recharge(body.get("amount_cents"))
    return web.json_response({"balance_cents": balance})


@routes.post("/orders")
async def post_orders(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    order = plane.orders.parse_order(await json_body(request))
    return web.json_response(await plane.orders.place(plane.account_id, order), status=201)


@routes.get("/phones")
async def get_phones(request: web.Request) -> web.Response:
    state = request.query.get("state")
    if state is not None and state not in set(PhoneState):
        raise bad_request("invalid_query", f"state must be one of {[str(s) for s in PhoneState]}")
    return web.json_response({"phones": await request.app[PLANE_KEY].phones(state)})


@routes.get("/phones/{id}")
async def get_phone(request: web.Request) -> web.Response:
    return web.json_response(await request.app[PLANE_KEY].phone(request.match_info["id"]))


@routes.delete("/phones/{id}")
async def delete_phone(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    row, final = await plane.orders.delete(plane.account_id, request.match_info["id"])
    return web.json_response({"phone": as_dict(row), "final_bill_cents": final})


@routes.post("/phones/{id}/renew")
async def post_renew(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    body = await json_body(request)
    row = await plane.orders.renew(
        plane.account_id, request.match_info["id"], body.get("period"), body.get("duration")
    )
    return web.json_response(as_dict(row))


@routes.post("/phones/{id}/unsubscribe")
async def post_unsubscribe(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    row, refund = await plane.orders.unsubscribe(plane.account_id, request.match_info["id"])
    return web.json_response({"phone": as_dict(row), "refund_cents": refund})


async def _power(request: web.Request, action: str) -> web.Response:
    plane = request.app[PLANE_KEY]
    row = await plane.orders.power(plane.account_id, request.match_info["id"], action)
    return web.json_response(as_dict(row))


@routes.post("/phones/{id}/start")
async def post_start(request: web.Request) -> web.Response:
    return await _power(request, "start")


@routes.post("/phones/{id}/stop")
async def post_stop(request: web.Request) -> web.Response:
    return await _power(request, "stop")


@routes.post("/phones/{id}/restart")
async def post_restart(request: web.Request) -> web.Response:
    return await _power(request, "restart")


@routes.get("/ledger")
async def get_ledger(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", 100, 1, 1000)
    before = int_query(request, "before", None, 1, 2**62)
    assert limit is not None
    entries = await request.app[PLANE_KEY].ledger_entries(limit, before)
    return web.json_response({"entries": entries})


def control_app(plane: ControlPlane) -> web.Application:
    """The `/api/v1` sub-application for an already constructed control plane."""
    sub = web.Application(middlewares=[errors_middleware, auth_middleware])
    sub[PLANE_KEY] = plane
    sub.add_routes(all_routes())
    return sub


def all_routes() -> list[web.AbstractRouteDef]:
    from cloudphone.edge.control import api_auth, api_people, api_sharing

    return [*routes, *api_people.routes, *api_auth.routes, *api_sharing.routes]


def setup_control(
    app: web.Application,
    pool: InstancePool,
    store: Store | None = None,
    config: ControlConfig | None = None,
    *,
    clock: Clock | None = None,
    scheduler: bool = True,
    disconnect: Disconnect | None = None,
    sender: Sender | None = None,
    policies: PolicyBook | None = None,
) -> ControlPlane:
    """Mount the control plane at `/api/v1` on `app`; it starts and stops with the app.

    Call it after the edge registered its own startup, so phones the control plane restores
    appear once the edge node listens to the pool. `disconnect(phone_id, reason)` closes the
    viewers of a phone that is stopped rather than released (the edge node's
    `disconnect_instance`). `policies` is the edge's policy book: kept in this store from now on.
    """
    config = config or ControlConfig()
    plane = ControlPlane(
        pool,
        store or SQLiteStore(config.db_path),
        config,
        clock,
        scheduler=scheduler,
        disconnect=disconnect,
        sender=sender,
        policies=policies,
    )

    async def start(_: web.Application) -> None:
        await plane.start()

    async def close(_: web.Application) -> None:
        await plane.close()

    app.on_startup.append(start)
    app.on_cleanup.insert(0, close)  # before the edge closes the pool
    app.add_subapp(PREFIX, control_app(plane))
    return plane
