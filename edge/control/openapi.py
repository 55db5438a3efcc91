"""The OpenAPI 3.1 description of `/api/v1`, served at `/api/v1/openapi.json`.

Written by hand next to the handlers; a test checks that every route is described, nothing
else is, and that real responses match the schemas given here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cloudphone.edge.control.phones import Mode, PhoneState
from cloudphone.edge.policy import CLIPBOARD_MODES, WATERMARK_MODES, Policy

J = dict[str, Any]


def _ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], props: J, *, extra: bool = False) -> J:
    return {
        "type": "object",
        "required": required,
        "properties": props,
        "additionalProperties": extra,
    }


INT: J = {"type": "integer"}
STR: J = {"type": "string"}
NINT: J = {"type": ["integer", "null"]}
NSTR: J = {"type": ["string", "null"]}

NUM: J = {"type": "number"}


def _policy_fields() -> J:
    """One schema per field of `Policy`, from the dataclass itself, so they cannot drift."""
    by_type: dict[str, J] = {
        "bool": {"type": "boolean"},
        "int": {"type": "integer", "minimum": 0},
        "float": {"type": "number", "minimum": 0},
        "str": STR,
        "tuple[str, ...]": {"type": "array", "items": STR},
    }
    fields = {f.name: dict(by_type[str(f.type)]) for f in dataclasses.fields(Policy)}
    fields["watermark"] = {"enum": list(WATERMARK_MODES)}
    fields["clipboard"] = {"enum": list(CLIPBOARD_MODES)}
    return fields


POLICY_FIELDS = _policy_fields()
AUDIT_TEXT: J = {"type": "string", "minLength": 1, "maxLength": 128}

SCHEMAS: J = {
    "Policy": _obj(list(POLICY_FIELDS), POLICY_FIELDS),
    "PolicyFields": {
        **_obj([], POLICY_FIELDS),
        "description": "only the fields this level sets",
    },
    "PolicyChange": {
        **_obj([], {k: {"anyOf": [v, {"type": "null"}]} for k, v in POLICY_FIELDS.items()}),
        "description": "fields to set; null drops what this level set",
    },
    "OrgPolicy": _obj(
        ["org_id", "policy", "effective"],
        {"org_id": INT, "policy": _ref("PolicyFields"), "effective": _ref("Policy")},
    ),
    "PhonePolicy": _obj(
        ["phone_id", "org_id", "overrides", "effective"],
        {
            "phone_id": STR,
            "org_id": {**NINT, "description": "the owner's organisation"},
            "overrides": _ref("PolicyFields"),
            "effective": _ref("Policy"),
        },
    ),
    "AuditEntry": _obj(
        ["id", "at", "phone", "org_id", "actor", "action", "details"],
        {
            "id": INT,
            "at": {**NUM, "description": "seconds since 1970"},
            "phone": STR,
            "org_id": {**NINT, "description": "the phone owner's organisation at the time"},
            "actor": STR,
            "action": {"type": "string", "description": "e.g. session/join, control/grant"},
            "details": {"type": "object", "additionalProperties": True},
        },
    ),
    "Error": _obj(["error"], {"error": _obj(["code", "message"], {"code": STR, "message": STR})}),
    "Zone": _obj(["name", "served"], {"name": STR, "served": {"type": "boolean"}}),
    "Region": _obj(
        ["name", "title", "zones"],
        {"name": STR, "title": STR, "zones": {"type": "array", "items": _ref("Zone")}},
    ),
    "Flavor": _obj(
        ["name", "width", "height", "fps", "codec", "max_bitrate_kbps", "guest_kind", "prices"],
        {
            "name": STR,
            "width": INT,
            "height": INT,
            "fps": INT,
            "codec": STR,
            "max_bitrate_kbps": INT,
            "guest_kind": STR,
            "prices": _obj(
                ["on_demand_cents_per_hour", "month_cents", "year_cents"],
                {"on_demand_cents_per_hour": INT, "month_cents": INT, "year_cents": INT},
            ),
        },
    ),
    "Account": _obj(
        ["id", "name", "balance_cents", "phones"],
        {
            "id": INT,
            "name": STR,
            "balance_cents": INT,
            "phones": {
                "type": "object",
                "additionalProperties": INT,
                "description": "number of phones by state",
            },
        },
    ),
    "Billing": _obj(
        ["mode"],
        {
            "mode": {"enum": [str(m) for m in Mode]},
            "period_start": INT,
            "expires_at": INT,
            "paid_cents": INT,
            "price_cents_per_hour": INT,
            "metered_seconds": INT,
            "billed_cents": INT,
            "next_bill_at": NINT,
        },
    ),
    "Phone": _obj(
        [
            "id",
            "name",
            "order_id",
            "region",
            "zone",
            "flavor",
            "state",
            "billing",
            "created_at",
            "frozen_at",
            "expired_at",
            "released_at",
            "release_reason",
        ],
        {
            "id": STR,
            "name": STR,
            "order_id": INT,
            "region": STR,
            "zone": STR,
            "flavor": STR,
            "state": {"enum": [str(s) for s in PhoneState]},
            "billing": _ref("Billing"),
            "created_at": INT,
            "frozen_at": NINT,
            "expired_at": NINT,
            "released_at": NINT,
            "release_reason": NSTR,
            "user_id": NINT,
        },
    ),
    "Org": _obj(
        ["id", "name", "parent_id", "created_at"],
        {"id": INT, "name": STR, "parent_id": NINT, "created_at": INT},
    ),
    "User": _obj(
        ["id", "login", "name", "mobile", "org_id", "role", "created_at", "phones"],
        {
            "id": INT,
            "login": STR,
            "name": STR,
            "mobile": STR,
            "org_id": INT,
            "role": {"enum": ["admin", "user"]},
            "created_at": INT,
            "phones": {"type": "integer", "description": "phones bound to the user"},
        },
    ),
    "NewUser": _obj(
        ["login", "name", "mobile", "org_id", "password"],
        {
            "login": STR,
            "name": STR,
            "mobile": STR,
            "org_id": INT,
            "role": {"enum": ["admin", "user"]},
            "password": STR,
        },
    ),
    "Me": _obj(
        ["user", "csrf_token", "expires_at"],
        {"user": _ref("User"), "csrf_token": STR, "expires_at": INT},
    ),
    "LoginReply": _obj(
        ["status"],
        {
            "status": {"enum": ["challenge", "session"]},
            "challenge": STR,
            "expires_at": INT,
            "sent_to": STR,
            "user": _ref("User"),
            "csrf_token": STR,
        },
    ),
    "MyPhone": _obj(
        ["id", "name", "state", "region", "zone", "flavor", "usable"],
        {
            "id": STR,
            "name": STR,
            "state": {"enum": [str(s) for s in PhoneState]},
            "region": STR,
            "zone": STR,
            "flavor": STR,
            "usable": {"type": "boolean"},
        },
    ),
    "Device": _obj(
        ["id", "label", "created_at", "expires_at"],
        {"id": INT, "label": STR, "created_at": INT, "expires_at": INT},
    ),
    "LedgerEntry": _obj(
        ["id", "at", "kind", "amount_cents", "balance_after_cents", "order_id", "phone_id", "memo"],
        {
            "id": INT,
            "at": INT,
            "kind": {"enum": ["recharge", "purchase", "renewal", "refund", "usage"]},
            "amount_cents": INT,
            "balance_after_cents": INT,
            "order_id": NINT,
            "phone_id": NSTR,
            "memo": STR,
        },
    ),
    "OrderRequest": _obj(
        ["region", "zone", "flavor", "name", "count", "billing"],
        {
            "region": STR,
            "zone": STR,
            "flavor": STR,
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"},
            "count": {"type": "integer", "minimum": 1},
            "billing": _obj(
                ["mode"],
                {
                    "mode": {"enum": [str(m) for m in Mode]},
                    "period": {"enum": ["month", "year"]},
                    "duration": {"type": "integer", "minimum": 1},
                },
            ),
        },
    ),
    "Order": _obj(
        ["order_id", "phones", "charged_cents"],
        {
            "order_id": INT,
            "phones": {"type": "array", "items": _ref("Phone")},
            "charged_cents": INT,
        },
    ),
    "Done": {"type": "object", "description": "an acknowledgement", "additionalProperties": True},
    "Renewal": _obj(
        ["period", "duration"],
        {"period": {"enum": ["month", "year"]}, "duration": {"type": "integer", "minimum": 1}},
    ),
}


def _json(schema: J) -> J:
    return {"content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    ok: J,
    *,
    status: str = "200",
    body: J | None = None,
    params: list[J] | None = None,
    errors: tuple[int, ...] = (),
) -> J:
    responses: J = {status: {"description": "success", **_json(ok)}}
    responses["401"] = {"description": "not logged in / wrong token", **_json(_ref("Error"))}
    responses["403"] = {
        "description": "not allowed for this caller, or no CSRF header",
        **_json(_ref("Error")),
    }
    for code in errors:
        responses[str(code)] = {"description": "refused", **_json(_ref("Error"))}
    op: J = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    if params:
        op["parameters"] = params
    return op


PHONE_ID: J = {"name": "id", "in": "path", "required": True, "schema": STR}
INT_ID: J = {"name": "id", "in": "path", "required": True, "schema": INT}


def _query(name: str, schema: J) -> J:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _public(summary: str, ok: J, *, body: J, errors: tuple[int, ...]) -> J:
    op = _op(summary, ok, body=body, errors=errors)
    op["security"] = []
    return op


def _phone_action(summary: str, ok: J, errors: tuple[int, ...] = (404, 409)) -> J:
    return {"post": _op(summary, ok, params=[PHONE_ID], errors=errors)}


def openapi_document() -> J:
    """The document; built fresh so callers may not mutate a shared copy."""
    phone_list = _obj(["phones"], {"phones": {"type": "array", "items": _ref("Phone")}})
    return {
        "openapi": "3.1.0",
        "info": {"title": "cloudphone control plane", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "cp_session",
                    "description": "writes also need the X-CSRF-Token header",
                },
            },
        },
        "security": [{"admin": []}, {"session": []}],
        "paths": {
            "/openapi.json": {
                "get": {
                    "summary": "this document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
            "/regions": {
                "get": _op(
                    "regions and their zones",
                    _obj(["regions"], {"regions": {"type": "array", "items": _ref("Region")}}),
                )
            },
            "/flavors": {
                "get": _op(
                    "phone specs and prices",
                    _obj(["flavors"], {"flavors": {"type": "array", "items": _ref("Flavor")}}),
                )
            },
            "/account": {"get": _op("balance and phone counts", _ref("Account"))},
            "/account/recharge": {
                "post": _op(
                    "add money to the balance",
                    _obj(["balance_cents"], {"balance_cents": INT}),
                    body=_obj(
                        ["amount_cents"], {"amount_cents": {"type": "integer", "minimum": 1}}
                    ),
                    errors=(400,),
                )
            },
            "/orders": {
                "post": _op(
                    "buy `count` phones, all or none",
                    _ref("Order"),
                    status="201",
                    body=_ref("OrderRequest"),
                    errors=(400, 402, 409, 503),
                )
            },
            "/phones": {
                "get": _op(
                    "all phones of the account",
                    phone_list,
                    params=[
                        {
                            "name": "state",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": [str(s) for s in PhoneState]},
                        }
                    ],
                    errors=(400,),
                )
            },
            "/phones/{id}": {
                "get": _op("one phone", _ref("Phone"), params=[PHONE_ID], errors=(404,)),
                "delete": _op(
                    "delete an on-demand phone after a final bill",
                    _obj(
                        ["phone", "final_bill_cents"],
                        {"phone": _ref("Phone"), "final_bill_cents": INT},
                    ),
                    params=[PHONE_ID],
                    errors=(404, 409),
                ),
            },
            "/phones/{id}/renew": {
                "post": _op(
                    "extend a prepaid phone, charged up front",
                    _ref("Phone"),
                    body=_ref("Renewal"),
                    params=[PHONE_ID],
                    errors=(400, 402, 404, 409),
                )
            },
            "/phones/{id}/unsubscribe": _phone_action(
                "release a prepaid phone, refunding unused time pro rata",
                _obj(["phone", "refund_cents"], {"phone": _ref("Phone"), "refund_cents": INT}),
            ),
            "/phones/{id}/start": _phone_action("start", _ref("Phone"), (402, 404, 409)),
            "/phones/{id}/stop": _phone_action("stop", _ref("Phone"), (402, 404, 409)),
            "/phones/{id}/restart": _phone_action("restart", _ref("Phone"), (402, 404, 409)),
            "/orgs": {
                "get": _op(
                    "organisations",
                    _obj(["orgs"], {"orgs": {"type": "array", "items": _ref("Org")}}),
                ),
                "post": _op(
                    "create an organisation",
                    _ref("Org"),
                    status="201",
                    body=_obj(["name"], {"name": STR, "parent_id": NINT}),
                    errors=(400, 404),
                ),
            },
            "/orgs/{id}": {
                "patch": _op(
                    "rename and/or move (parent_id) an organisation",
                    _ref("Org"),
                    body=_obj([], {"name": STR, "parent_id": NINT}),
                    params=[INT_ID],
                    errors=(400, 404, 409),
                ),
                "delete": _op(
                    "delete an empty organisation", _ref("Done"), params=[INT_ID], errors=(404, 409)
                ),
            },
            "/users": {
                "get": _op(
                    "users",
                    _obj(["users"], {"users": {"type": "array", "items": _ref("User")}}),
                    params=[{"name": "org_id", "in": "query", "required": False, "schema": INT}],
                    errors=(400,),
                ),
                "post": _op(
                    "create a user",
                    _ref("User"),
                    status="201",
                    body=_ref("NewUser"),
                    errors=(400, 404, 409),
                ),
            },
            "/users/{id}": {
                "get": _op("one user", _ref("User"), params=[INT_ID], errors=(404,)),
                "patch": _op(
                    "rename, change mobile or role, move to another org",
                    _ref("User"),
                    body=_obj(
                        [],
                        {
                            "name": STR,
                            "mobile": STR,
                            "org_id": INT,
                            "role": {"enum": ["admin", "user"]},
                        },
                    ),
                    params=[INT_ID],
                    errors=(400, 404),
                ),
                "delete": _op(
                    "delete a user without bound phones",
                    _ref("Done"),
                    params=[INT_ID],
                    errors=(404, 409),
                ),
            },
            "/users/{id}/password": {
                "post": _op(
                    "set a user's password (their sessions end)",
                    _ref("Done"),
                    body=_obj(["password"], {"password": STR}),
                    params=[INT_ID],
                    errors=(400, 404),
                )
            },
            "/users/{id}/devices": {
                "delete": _op(
                    "revoke every browser the user trusted",
                    _ref("Done"),
                    params=[INT_ID],
                    errors=(404,),
                )
            },
            "/phones/{id}/assign": {
                "post": _op(
                    "bind a phone to a user (sends them a notice)",
                    _ref("Phone"),
                    body=_obj(["user_id"], {"user_id": INT}),
                    params=[PHONE_ID],
                    errors=(400, 404, 409),
                ),
                "delete": _op(
                    "unbind a phone (its viewers are disconnected)",
                    _ref("Phone"),
                    params=[PHONE_ID],
                    errors=(404,),
                ),
            },
            "/auth/login": {
                "post": _public(
                    "account + password: a session (trusted browser) or a code challenge",
                    _ref("LoginReply"),
                    body=_obj(["account", "password"], {"account": STR, "password": STR}),
                    errors=(400, 401, 429),
                )
            },
            "/auth/verify": {
                "post": _public(
                    "the SMS code: a session cookie, and a trusted-browser cookie if asked",
                    _ref("LoginReply"),
                    body=_obj(
                        ["challenge", "code"],
                        {"challenge": STR, "code": STR, "trust_browser": {"type": "boolean"}},
                    ),
                    errors=(400, 401, 429),
                )
            },
            "/auth/session": {"get": _op("who is logged in, and the CSRF token", _ref("Me"))},
            "/auth/logout": {"post": _op("end this session", _ref("Done"))},
            "/auth/password": {
                "post": _op(
                    "change one's password (every session ends)",
                    _ref("Done"),
                    body=_obj(
                        ["old_password", "new_password"], {"old_password": STR, "new_password": STR}
                    ),
                    errors=(400,),
                )
            },
            "/me/phones": {
                "get": _op(
                    "the phones bound to me",
                    _obj(
                        ["count", "phones"],
                        {"count": INT, "phones": {"type": "array", "items": _ref("MyPhone")}},
                    ),
                )
            },
            "/me/phones/{id}/connect": {
                "post": _op(
                    "a short-lived signaling token for one of my phones",
                    _obj(
                        ["token", "expires_at", "instance", "signaling", "player"],
                        {
                            "token": STR,
                            "expires_at": INT,
                            "instance": STR,
                            "signaling": STR,
                            "player": STR,
                        },
                    ),
                    params=[PHONE_ID],
                    errors=(409,),
                )
            },
            "/me/devices": {
                "get": _op(
                    "browsers I trusted",
                    _obj(["devices"], {"devices": {"type": "array", "items": _ref("Device")}}),
                )
            },
            "/me/devices/{id}": {
                "delete": _op(
                    "forget one trusted browser", _ref("Done"), params=[INT_ID], errors=(404,)
                )
            },
            "/audit": {
                "get": _op(
                    "audit entries, newest first, of the caller's organisations' phones",
                    _obj(
                        ["entries", "next_before"],
                        {
                            "entries": {"type": "array", "items": _ref("AuditEntry")},
                            "next_before": {
                                **NINT,
                                "description": "pass as `before` for the next page",
                            },
                        },
                    ),
                    params=[
                        _query("phone", AUDIT_TEXT),
                        _query("actor", AUDIT_TEXT),
                        _query("action", {**AUDIT_TEXT, "description": "`control` = control/*"}),
                        _query("since", {**NUM, "minimum": 0, "description": "at >= since"}),
                        _query("until", {**NUM, "minimum": 0, "description": "at < until"}),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                        _query("before", {"type": "integer", "minimum": 1}),
                    ],
                    errors=(400, 404),
                )
            },
            "/orgs/{id}/policy": {
                "get": _op(
                    "an organisation's security policy",
                    _ref("OrgPolicy"),
                    params=[INT_ID],
                    errors=(404,),
                ),
                "put": _op(
                    "set fields of an organisation's policy (kept; applies at the next check)",
                    _ref("OrgPolicy"),
                    body=_ref("PolicyChange"),
                    params=[INT_ID],
                    errors=(400, 404),
                ),
            },
            "/phones/{id}/policy": {
                "get": _op(
                    "a phone's overrides and effective policy",
                    _ref("PhonePolicy"),
                    params=[PHONE_ID],
                    errors=(404,),
                ),
                "put": _op(
                    "override fields for one phone (kept; applies at the next check)",
                    _ref("PhonePolicy"),
                    body=_ref("PolicyChange"),
                    params=[PHONE_ID],
                    errors=(400, 404),
                ),
            },
            "/ledger": {
                "get": _op(
                    "balance changes, newest first",
                    _obj(["entries"], {"entries": {"type": "array", "items": _ref("LedgerEntry")}}),
                    params=[
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                        {
                            "name": "before",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1},
                        },
                    ],
                    errors=(400,),
                )
            },
        },
    }
