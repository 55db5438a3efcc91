"""Shared pieces of the control-plane tests: a tiny test guest, a schema checker, builders.

The guest stands in for the simulated phone where a test is about money, not pixels; it can be
told to fail so all-or-none ordering is tested for real.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp.test_utils import TestClient
from cloudphone.edge.control.config import ControlConfig, Flavor
from cloudphone.vm.guest import Capabilities, Guest, GuestError, GuestState, InputEvent
from cloudphone.vm.pool import GuestSpec, InstancePool

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class LedgerGuest(Guest):
    """A guest with no screen: starts, stops, and fails to start when its spec says so."""

    started = 0
    hang: asyncio.Event | None = None  # when set, start() waits on it (an order cut short)

    def __init__(self, guest_id: str, spec: GuestSpec) -> None:
        super().__init__(guest_id)
        self.spec = spec

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    async def start(self) -> None:
        fail_after = self.spec.options.get("fail_after")
        if fail_after is not None and LedgerGuest.started >= fail_after:
            raise GuestError("test guest refuses to start")
        if LedgerGuest.hang is not None:
            await LedgerGuest.hang.wait()
        LedgerGuest.started += 1
        self._set_state(GuestState.RUNNING)

    async def stop(self) -> None:
        self._set_state(GuestState.STOPPED)

    async def send_input(self, event: InputEvent) -> None:
        pass


def make_pool() -> InstancePool:
    LedgerGuest.started = 0
    pool = InstancePool()
    pool.register_kind("ledger", LedgerGuest)
    return pool


def make_config(**changes: Any) -> ControlConfig:
    flavors = (
        Flavor(
            "std",
            720,
            1280,
            30,
            on_demand_cents_per_hour=7,
            month_cents=3000,
            year_cents=30000,
            guest_kind="ledger",
        ),
        Flavor(
            "broken",
            720,
            1280,
            30,
            on_demand_cents_per_hour=7,
            month_cents=3000,
            year_cents=30000,
            guest_kind="ledger",
            guest_options={"fail_after": 1},
        ),
    )
    base = ControlConfig(flavors=flavors, admin_token=TOKEN, max_count=10)
    return base.with_(**changes)


def order_body(count: Any = 1, mode: str = "on_demand", **over: Any) -> dict[str, Any]:
    billing: dict[str, Any] = {"mode": mode}
    if mode == "prepaid":
        billing.update(period="month", duration=1)
    body: dict[str, Any] = {
        "region": "cn-east",
        "zone": "cn-east-a",
        "flavor": "std",
        "name": "web",
        "count": count,
        "billing": billing,
    }
    body.update(over)
    return body


# -- a small JSON-schema checker for the subset the OpenAPI document uses -----------------------


def check_schema(value: Any, schema: dict[str, Any], doc: dict[str, Any], path: str = "$") -> None:
    """Raise AssertionError where `value` does not match `schema` (refs resolved in `doc`)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        check_schema(value, doc["components"]["schemas"][name], doc, path)
        return
    if "anyOf" in schema:
        problems = []
        for option in schema["anyOf"]:
            try:
                check_schema(value, option, doc, path)
                break
            except AssertionError as exc:
                problems.append(str(exc))
        else:
            raise AssertionError(f"{path}: matches no option: {problems}")
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    types = schema.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        kinds = {
            "object": dict,
            "array": list,
            "string": str,
            "boolean": bool,
            "null": type(None),
        }
        ok = any(
            (t == "integer" and type(value) is int)
            or (t == "number" and type(value) in (int, float))
            or (
                t in kinds
                and isinstance(value, kinds[t])
                and not (t != "boolean" and isinstance(value, bool))
            )
            for t in types
        )
        assert ok, f"{path}: {value!r} is not {types}"
    if "pattern" in schema and isinstance(value, str):
        assert re.search(schema["pattern"], value), f"{path}: {value!r} !~ {schema['pattern']}"
    if "minimum" in schema and type(value) in (int, float):
        assert value >= schema["minimum"], f"{path}: {value} < {schema['minimum']}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            assert key in value, f"{path}: missing {key!r}"
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                check_schema(item, props[key], doc, f"{path}.{key}")
            elif extra is False:
                raise AssertionError(f"{path}: undocumented property {key!r}")
            elif isinstance(extra, dict):
                check_schema(item, extra, doc, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check_schema(item, schema["items"], doc, f"{path}[{i}]")


def check_documented(doc: dict[str, Any], method: str, path: str, status: int, body: Any) -> None:
    """Assert that the OpenAPI document describes this exchange exactly (status and body)."""
    bare = path.split("?")[0]
    for template in doc["paths"]:
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, bare):
            break
    else:
        raise AssertionError(f"{path} is not in the OpenAPI document")
    op = doc["paths"][template][method.lower()]
    documented = op["responses"].get(str(status))
    assert documented is not None, f"{method} {path}: status {status} undocumented"
    check_schema(body, documented["content"]["application/json"]["schema"], doc)


class Api:
    """An HTTP client for /api/v1 that checks every response against the OpenAPI document."""

    def __init__(self, client: TestClient, doc: dict[str, Any], headers: dict[str, str]) -> None:
        self.client = client
        self.doc = doc
        self.headers = headers

    async def call(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        resp = await self.client.request(method, "/api/v1" + path, headers=headers, **kw)
        body = await resp.json()
        assert resp.status == expect, (resp.status, body)
        check_documented(self.doc, method, path, resp.status, body)
        return body

    async def get(self, path: str, expect: int = 200, **kw: Any) -> Any:
        return await self.call("GET", path, expect, **kw)

    async def post(self, path: str, json: Any = None, expect: int = 200, **kw: Any) -> Any:
        return await self.call("POST", path, expect, json=json, **kw)

    async def delete(self, path: str, expect: int = 200, **kw: Any) -> Any:
        return await self.call("DELETE", path, expect, **kw)
