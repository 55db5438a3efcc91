"""Sharing under `/api/v1`: the audit log and security policies, scoped to the caller.

An admin token sees every organisation and phone. A user with the `admin` role sees their
organisation and those under it: the audit entries written while one of its users owned the
phone, and the policies of those organisations and of the phones their users own. A plain user
gets 403 (these handlers are admin-level). Policy writes go through the edge's policy book, so
they are kept in the store and enforced from the next check on.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from aiohttp import web
from cloudphone.edge.control.errors import ControlError, bad_request, not_found
from cloudphone.edge.control.httputil import PLANE_KEY, caller, int_path, int_query, json_body
from cloudphone.edge.policy import PolicyBook, PolicyError

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_TEXT = 128
MAX_TIME = 1e11  # seconds since 1970; anything larger is a typo (milliseconds)


async def _scope(request: web.Request) -> list[int] | None:
    """The organisations the caller may see; None: all (an admin token)."""
    session = caller(request).session
    if session is None:
        return None
    return await request.app[PLANE_KEY].directory.org_subtree(int(session.user["org_id"]))


def _text_query(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is not None and not 1 <= len(raw) <= MAX_TEXT:
        raise bad_request("invalid_query", f"{name} must be 1..{MAX_TEXT} characters")
    return raw


def _time_query(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_TIME:
        raise bad_request("invalid_query", f"{name} must be seconds since 1970 (0..{MAX_TIME:.0f})")
    return value


async def _phone(request: web.Request, phone_id: str, scope: list[int] | None) -> int | None:
    """The phone's owning organisation; 404 when no one here knows it, 403 when it is not in
    the caller's organisations (phones of the edge's own configuration belong to none)."""
    plane = request.app[PLANE_KEY]
    sold, org_id = await plane.directory.phone_org(phone_id)
    if not sold and phone_id not in plane.pool:
        raise not_found("phone", phone_id)
    if scope is not None and (org_id is None or org_id not in scope):
        raise ControlError(403, "forbidden", f"phone {phone_id!r} is not in your organisation")
    return org_id


async def _org(request: web.Request) -> int:
    """The organisation in the path; 404 unknown, 403 outside the caller's organisations."""
    plane = request.app[PLANE_KEY]
    org_id = int_path(request)
    await plane.directory.org(org_id)
    scope = await _scope(request)
    if scope is not None and org_id not in scope:
        raise ControlError(403, "forbidden", f"organisation {org_id} is not yours")
    return org_id


@routes.get("/audit")
async def get_audit(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    limit = int_query(request, "limit", 100, 1, 1000)
    before = int_query(request, "before", None, 1, 2**62)
    assert limit is not None
    since, until = _time_query(request, "since"), _time_query(request, "until")
    if since is not None and until is not None and since > until:
        raise bad_request("invalid_query", "since must not be after until")
    phone = _text_query(request, "phone")
    scope = await _scope(request)
    if phone is not None:
        try:
            await _phone(request, phone, scope)
        except ControlError as exc:
            # An admin token may read the history of a phone that is gone.
            gone = exc.status == 404 and await plane.audit_store.entries(
                orgs=None, phone=phone, limit=1
            )
            if not gone:
                raise
    entries = await plane.audit_store.entries(
        orgs=scope,
        phone=phone,
        actor=_text_query(request, "actor"),
        action=_text_query(request, "action"),
        since=since,
        until=until,
        before=before,
        limit=limit,
    )
    next_before = entries[-1]["id"] if len(entries) == limit else None
    return web.json_response({"entries": entries, "next_before": next_before})


def _org_policy(book: PolicyBook, org_id: int) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "policy": book.org_fields(str(org_id)),
        "effective": book.org_policy(str(org_id)).as_dict(),
    }


def _phone_policy(book: PolicyBook, phone_id: str, org_id: int | None) -> dict[str, Any]:
    return {
        "phone_id": phone_id,
        "org_id": org_id,
        "overrides": book.overrides(phone_id),
        "effective": book.for_phone(phone_id).as_dict(),
    }


def _policy_error(what: str, exc: PolicyError) -> ControlError:
    log.info("policy of %s refused: %s", what, exc)
    return bad_request("invalid_policy", str(exc))


@routes.get("/orgs/{id}/policy")
async def get_org_policy(request: web.Request) -> web.Response:
    org_id = await _org(request)
    return web.json_response(_org_policy(request.app[PLANE_KEY].policies, org_id))


@routes.put("/orgs/{id}/policy")
async def put_org_policy(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    org_id = await _org(request)
    body = await json_body(request)
    try:
        await plane.policies.save_org(str(org_id), body)
    except PolicyError as exc:
        raise _policy_error(f"organisation {org_id}", exc) from None
    log.info("policy of organisation %s set: %s", org_id, sorted(body))
    return web.json_response(_org_policy(plane.policies, org_id))


@routes.get("/phones/{id}/policy")
async def get_phone_policy(request: web.Request) -> web.Response:
    phone_id = request.match_info["id"]
    org_id = await _phone(request, phone_id, await _scope(request))
    return web.json_response(_phone_policy(request.app[PLANE_KEY].policies, phone_id, org_id))


@routes.put("/phones/{id}/policy")
async def put_phone_policy(request: web.Request) -> web.Response:
    plane = request.app[PLANE_KEY]
    phone_id = request.match_info["id"]
    org_id = await _phone(request, phone_id, await _scope(request))
    body = await json_body(request)
    try:
        await plane.policies.save_phone(phone_id, body)
    except PolicyError as exc:
        raise _policy_error(f"phone {phone_id}", exc) from None
    log.info("policy of phone %s overridden: %s", phone_id, sorted(body))
    return web.json_response(_phone_policy(plane.policies, phone_id, org_id))
