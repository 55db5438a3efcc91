"""Admin HTTP endpoints for sharing and security: policies, invites, the audit log.

Mounted under `/edge/admin` and guarded by the admin bearer token (the edge's `admin_token`,
or the control plane's admin tokens when it is on). In development mode with no admin token
at all they are open, like the rest of the edge; say so in the startup log.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from cloudphone.edge.node import EdgeNode
from cloudphone.edge.policy import PolicyError
from cloudphone.edge.sharing.invites import InviteError

TokenCheck = Callable[[str], Awaitable[bool]]


def token_check(admin_token: str, fallback: TokenCheck | None = None) -> TokenCheck:
    async def check(token: str) -> bool:
        if admin_token and token and hmac.compare_digest(token.encode(), admin_token.encode()):
            return True
        return fallback is not None and await fallback(token)

    return check


_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    404: web.HTTPNotFound,
}


def _error(status: int, code: str, message: str) -> web.HTTPException:
    body = json.dumps({"error": {"code": code, "message": message}})
    return _STATUS[status](text=body, content_type="application/json")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise _error(400, "bad-json", "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise _error(400, "bad-json", "the body must be a JSON object")
    return data


def admin_routes(node: EdgeNode, check: TokenCheck | None) -> web.RouteTableDef:
    """`check` None: open (development mode without any admin token)."""
    routes = web.RouteTableDef()

    async def guard(request: web.Request) -> None:
        if check is None:
            return
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        if not await check(token):
            raise _error(401, "unauthorized", "an admin bearer token is required")

    def phone(request: web.Request) -> str:
        instance = request.match_info["instance"]
        if instance not in node.pipelines:
            raise _error(404, "unknown-instance", f"no phone {instance!r} here")
        return instance

    @routes.get("/edge/admin/audit")
    async def audit(request: web.Request) -> web.Response:
        await guard(request)
        try:
            limit = max(1, min(5000, int(request.query.get("limit", "500"))))
        except ValueError:
            raise _error(400, "bad-request", "limit must be an integer") from None
        entries = node.audit.entries(
            phone=request.query.get("phone"), action=request.query.get("action"), limit=limit
        )
        return web.json_response({"entries": entries})

    @routes.get("/edge/admin/policy/orgs/{org}")
    async def get_org(request: web.Request) -> web.Response:
        await guard(request)
        return web.json_response(node.policies.org_policy(request.match_info["org"]).as_dict())

    @routes.put("/edge/admin/policy/orgs/{org}")
    async def put_org(request: web.Request) -> web.Response:
        await guard(request)
        try:
            policy = await node.policies.save_org(
                request.match_info["org"], await _json_body(request)
            )
        except PolicyError as exc:
            raise _error(400, "bad-policy", str(exc)) from None
        return web.json_response(policy.as_dict())

    @routes.get("/edge/admin/policy/phones/{instance}")
    async def get_phone(request: web.Request) -> web.Response:
        await guard(request)
        instance = phone(request)
        return web.json_response(
            {
                "org": node.policies.org_of(instance),
                "overrides": node.policies.overrides(instance),
                "effective": node.policies.for_phone(instance).as_dict(),
            }
        )

    @routes.put("/edge/admin/policy/phones/{instance}")
    async def put_phone(request: web.Request) -> web.Response:
        await guard(request)
        instance = phone(request)
        body = await _json_body(request)
        org = body.pop("org", None)
        if org is not None:
            if not isinstance(org, str) or not org:
                raise _error(400, "bad-policy", "org must be a non-empty string")
            node.policies.assign(instance, org)
        try:
            policy = await node.policies.save_phone(instance, body)
        except PolicyError as exc:
            raise _error(400, "bad-policy", str(exc)) from None
        return web.json_response(policy.as_dict())

    @routes.get("/edge/admin/phones/{instance}/invites")
    async def list_invites(request: web.Request) -> web.Response:
        await guard(request)
        invites = await node.invites.of_instance(phone(request))
        return web.json_response({"invites": [i.as_dict() for i in invites]})

    @routes.post("/edge/admin/phones/{instance}/invites")
    async def create_invite(request: web.Request) -> web.Response:
        await guard(request)
        instance = phone(request)
        body = await _json_body(request)
        try:
            invite, token = await node.invites.create(
                instance,
                kind=body.get("kind", "view"),
                label=body.get("label", ""),
                ttl_s=body.get("ttlS", 3600),
                max_uses=body.get("maxUses", 1),
                created_by="admin",
            )
        except InviteError as exc:
            raise _error(400, exc.code, exc.message) from None
        node.audit.record("invite/create", phone=instance, actor="admin",
                          invite=invite.invite_id, label=invite.label)  # fmt: skip
        path = f"/phone/{instance}?token={token}&role=viewer"
        return web.json_response({"invite": invite.as_dict(), "token": token, "path": path})

    @routes.delete("/edge/admin/invites/{invite}")
    async def revoke_invite(request: web.Request) -> web.Response:
        await guard(request)
        try:
            invite = await node.invites.revoke(request.match_info["invite"])
        except InviteError as exc:
            raise _error(404, exc.code, exc.message) from None
        node.audit.record("invite/revoke", phone=invite.instance, actor="admin",
                          invite=invite.invite_id)  # fmt: skip
        return web.json_response({"invite": invite.as_dict()})

    return routes
