"""The /api/v1 surface through real HTTP: auth, catalogue, recharge, orders, every bad input."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.web_routedef import RouteDef
from cloudphone.edge.control import ManualClock, setup_control
from cloudphone.edge.control.api import PREFIX, all_routes
from cloudphone.edge.control.cli import admin_main
from cloudphone.edge.control.openapi import openapi_document
from cloudphone.edge.control.plane import ControlPlane
from cloudphone.vm.pool import InstancePool

from tests.control_support import AUTH, Api, make_config, make_pool, order_body


class Env:
    def __init__(self, api: Api, plane: ControlPlane, pool: InstancePool, clock: ManualClock):
        self.api, self.plane, self.pool, self.clock = api, plane, pool, clock

    async def snapshot(self) -> tuple[Any, ...]:
        """Everything a refused request must leave untouched."""
        account = await self.api.get("/account")
        ledger = await self.api.get("/ledger")
        phones = await self.api.get("/phones")
        return account["balance_cents"], ledger["entries"], phones["phones"], len(self.pool)


@pytest.fixture
async def env(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Env]:
    clock = ManualClock()
    pool = make_pool()
    app = web.Application()
    config = make_config(db_path=str(tmp_path / "control.db"))
    plane = setup_control(app, pool, config=config, clock=clock, scheduler=False)
    client: TestClient = await aiohttp_client(app)
    yield Env(Api(client, openapi_document(), AUTH), plane, pool, clock)


async def test_requests_without_the_admin_token_are_refused(env: Env) -> None:
    client = env.api.client
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        resp = await client.get(f"{PREFIX}/account", headers=headers)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    resp = await client.post(f"{PREFIX}/account/recharge", json={"amount_cents": 100})
    assert resp.status == 401
    assert (await env.api.get("/account"))["balance_cents"] == 0


async def test_openapi_is_public_and_describes_every_route(env: Env) -> None:
    resp = await env.api.client.get(f"{PREFIX}/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc == openapi_document()
    served = {(r.path, r.method.lower()) for r in all_routes() if isinstance(r, RouteDef)}
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented


async def test_catalogue_lists_configured_regions_zones_and_flavors(env: Env) -> None:
    regions = (await env.api.get("/regions"))["regions"]
    assert [r["name"] for r in regions] == ["cn-east", "eu-west"]
    assert all(len(r["zones"]) == 2 and all(z["served"] for z in r["zones"]) for r in regions)
    flavors = (await env.api.get("/flavors"))["flavors"]
    assert flavors[0]["prices"] == {
        "on_demand_cents_per_hour": 7,
        "month_cents": 3000,
        "year_cents": 30000,
    }


async def test_recharge_adds_a_ledger_row(env: Env) -> None:
    resp = await env.api.post("/account/recharge", {"amount_cents": 1234})
    assert resp["balance_cents"] == 1234
    entries = (await env.api.get("/ledger"))["entries"]
    assert [(e["kind"], e["amount_cents"], e["balance_after_cents"]) for e in entries] == [
        ("recharge", 1234, 1234)
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"amount_cents": -5},
        {"amount_cents": 0},
        {"amount_cents": 1.5},
        {"amount_cents": "100"},
        {"amount_cents": True},
        {"amount_cents": 10**12},
        {},
        [1],
        "x",
    ],
)
async def test_bad_recharges_are_refused_without_a_trace(env: Env, body: Any) -> None:
    before = await env.snapshot()
    err = await env.api.post("/account/recharge", body, expect=400)
    assert err["error"]["code"] in ("invalid_amount", "invalid_json")
    assert await env.snapshot() == before


async def test_non_json_body_is_a_400(env: Env) -> None:
    err = await env.api.post("/account/recharge", data=b"{nope", expect=400)
    assert err["error"]["code"] == "invalid_json"


async def test_prepaid_batch_order_charges_up_front_and_names_phones(env: Env) -> None:
    await env.api.post("/account/recharge", {"amount_cents": 10_000})
    order = await env.api.post("/orders", order_body(3, "prepaid"), expect=201)
    assert order["charged_cents"] == 9000
    assert [p["name"] for p in order["phones"]] == ["web-0001", "web-0002", "web-0003"]
    assert {p["state"] for p in order["phones"]} == {"running"}
    assert {p["zone"] for p in order["phones"]} == {"cn-east-a"}
    assert len(env.pool) == 3
    assert all(g.state == "running" for g in env.pool)
    assert (await env.api.get("/account"))["balance_cents"] == 1000
    entry = (await env.api.get("/ledger"))["entries"][0]
    assert (entry["kind"], entry["amount_cents"], entry["order_id"]) == (
        "purchase",
        -9000,
        order["order_id"],
    )


async def test_on_demand_order_charges_nothing_up_front(env: Env) -> None:
    order = await env.api.post("/orders", order_body(2), expect=201)
    assert order["charged_cents"] == 0
    assert (await env.api.get("/account"))["balance_cents"] == 0
    assert len(env.pool) == 2


async def test_insufficient_balance_refuses_the_order_and_creates_nothing(env: Env) -> None:
    await env.api.post("/account/recharge", {"amount_cents": 8999})
    before = await env.snapshot()
    err = await env.api.post("/orders", order_body(3, "prepaid"), expect=402)
    assert err["error"]["code"] == "insufficient_balance"
    assert await env.snapshot() == before


BAD_ORDERS: list[tuple[dict[str, Any], int, str]] = [
    (order_body(region="mars"), 400, "unknown_region"),
    (order_body(zone="eu-west-a"), 400, "unknown_zone"),
    (order_body(flavor="huge"), 400, "unknown_flavor"),
    (order_body(count=0), 400, "invalid_count"),
    (order_body(count=11), 400, "invalid_count"),
    (order_body(count=-1), 400, "invalid_count"),
    (order_body(count="3"), 400, "invalid_count"),
    (order_body(name=""), 400, "invalid_name"),
    (order_body(name="a/b"), 400, "invalid_name"),
    (order_body(name="x" * 40), 400, "invalid_name"),
    (order_body(billing={"mode": "free"}), 400, "invalid_billing"),
    (order_body(billing="prepaid"), 400, "invalid_billing"),
    (order_body(billing={"mode": "on_demand", "period": "month"}), 400, "invalid_billing"),
    (
        order_body(billing={"mode": "prepaid", "period": "week", "duration": 1}),
        400,
        "invalid_period",
    ),
    (
        order_body(billing={"mode": "prepaid", "period": "month", "duration": 0}),
        400,
        "invalid_duration",
    ),
    (
        order_body(billing={"mode": "prepaid", "period": "year", "duration": 99}),
        400,
        "invalid_duration",
    ),
    (order_body(billing={"mode": "prepaid", "period": "month"}), 400, "invalid_duration"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_ORDERS)
async def test_bad_orders_are_refused_without_a_trace(
    env: Env, body: dict[str, Any], status: int, code: str
) -> None:
    await env.api.post("/account/recharge", {"amount_cents": 100_000})
    before = await env.snapshot()
    err = await env.api.post("/orders", body, expect=status)
    assert err["error"]["code"] == code
    assert await env.snapshot() == before


async def test_zone_not_served_by_this_node_is_refused(aiohttp_client: Any, tmp_path: Path) -> None:
    app = web.Application()
    config = make_config(db_path=str(tmp_path / "c.db"), node_zones=("cn-east-b",))
    setup_control(app, make_pool(), config=config, clock=ManualClock(), scheduler=False)
    api = Api(await aiohttp_client(app), openapi_document(), AUTH)
    err = await api.post("/orders", order_body(), expect=409)
    assert err["error"]["code"] == "zone_not_served"
    regions = (await api.get("/regions"))["regions"]
    assert regions[0]["zones"] == [
        {"name": "cn-east-a", "served": False},
        {"name": "cn-east-b", "served": True},
    ]
    order = await api.post("/orders", order_body(zone="cn-east-b"), expect=201)
    assert order["phones"][0]["zone"] == "cn-east-b"


async def test_an_order_that_cannot_start_every_phone_creates_none_and_refunds(env: Env) -> None:
    await env.api.post("/account/recharge", {"amount_cents": 10_000})
    removed: list[tuple[str, str]] = []
    env.pool.events.on("removed", lambda gid, reason: removed.append((gid, reason)))
    err = await env.api.post("/orders", order_body(3, "prepaid", flavor="broken"), expect=503)
    assert err["error"]["code"] == "provisioning_failed"
    assert len(env.pool) == 0
    assert len(removed) == 2  # the one that started and the one that failed
    assert (await env.api.get("/account"))["balance_cents"] == 10_000
    phones = (await env.api.get("/phones"))["phones"]
    assert {p["state"] for p in phones} == {"released"}
    kinds = [e["kind"] for e in (await env.api.get("/ledger"))["entries"]]
    assert kinds == ["refund", "purchase", "recharge"]


async def test_racing_orders_never_overdraw(env: Env) -> None:
    await env.api.post("/account/recharge", {"amount_cents": 10_000})  # covers 3 of 8 orders
    client = env.api.client
    resps = await asyncio.gather(
        *(
            client.post(
                f"{PREFIX}/orders", json=order_body(1, "prepaid", name=f"r{i}"), headers=AUTH
            )
            for i in range(8)
        )
    )
    statuses = sorted(r.status for r in resps)
    assert statuses == [201] * 3 + [402] * 5
    account = await env.api.get("/account")
    assert account["balance_cents"] == 1000
    entries = (await env.api.get("/ledger"))["entries"]
    assert sum(e["amount_cents"] for e in entries) == 1000
    assert min(e["balance_after_cents"] for e in entries) >= 0
    assert len(env.pool) == 3


async def test_racing_recharges_and_orders_keep_the_ledger_consistent(env: Env) -> None:
    client = env.api.client
    calls = [
        client.post(f"{PREFIX}/account/recharge", json={"amount_cents": 3000}, headers=AUTH)
        for _ in range(4)
    ]
    calls += [
        client.post(f"{PREFIX}/orders", json=order_body(1, "prepaid", name=f"o{i}"), headers=AUTH)
        for i in range(6)
    ]
    resps = await asyncio.gather(*calls)
    ok_orders = sum(1 for r in resps[4:] if r.status == 201)
    assert all(r.status in (201, 402) for r in resps[4:])
    balance = (await env.api.get("/account"))["balance_cents"]
    assert balance == 12_000 - 3000 * ok_orders >= 0
    entries = (await env.api.get("/ledger"))["entries"]
    running = 0
    for e in reversed(entries):
        running += e["amount_cents"]
        assert e["balance_after_cents"] == running >= 0


async def test_unknown_phone_and_unknown_route_are_json_404s(env: Env) -> None:
    err = await env.api.get("/phones/ph-missing", expect=404)
    assert err["error"]["code"] == "phone_not_found"
    resp = await env.api.client.get(f"{PREFIX}/nothing-here", headers=AUTH)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await env.api.client.put(f"{PREFIX}/account", headers=AUTH)
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "limit=5000", "before=-1"])
async def test_bad_ledger_queries_are_400(env: Env, query: str) -> None:
    err = await env.api.get(f"/ledger?{query}", expect=400)
    assert err["error"]["code"] == "invalid_query"


async def test_ledger_pages_newest_first(env: Env) -> None:
    for amount in (1, 2, 3):
        await env.api.post("/account/recharge", {"amount_cents": amount})
    page = (await env.api.get("/ledger?limit=2"))["entries"]
    assert [e["amount_cents"] for e in page] == [3, 2]
    rest = (await env.api.get(f"/ledger?before={page[-1]['id']}"))["entries"]
    assert [e["amount_cents"] for e in rest] == [1]


async def test_phone_actions_over_http(env: Env) -> None:
    await env.api.post("/account/recharge", {"amount_cents": 10_000})
    [pre] = (await env.api.post("/orders", order_body(1, "prepaid", name="pre"), expect=201))[
        "phones"
    ]
    [ond] = (await env.api.post("/orders", order_body(1, name="ond"), expect=201))["phones"]
    stopped = await env.api.post(f"/phones/{ond['id']}/stop")
    assert stopped["state"] == "stopped" and env.pool.get(ond["id"]).state == "stopped"
    assert [p["id"] for p in (await env.api.get("/phones?state=stopped"))["phones"]] == [ond["id"]]
    started = await env.api.post(f"/phones/{ond['id']}/start")
    assert started["state"] == "running" and env.pool.get(ond["id"]).state == "running"
    restarted = await env.api.post(f"/phones/{pre['id']}/restart")
    assert restarted["state"] == "running" and env.pool.get(pre["id"]).state == "running"
    renewed = await env.api.post(f"/phones/{pre['id']}/renew", {"period": "month", "duration": 2})
    assert renewed["billing"]["paid_cents"] == 9000
    env.clock.advance(3600)
    deleted = await env.api.delete(f"/phones/{ond['id']}")
    assert deleted["final_bill_cents"] == 7 and deleted["phone"]["state"] == "released"
    assert ond["id"] not in env.pool
    unsub = await env.api.post(f"/phones/{pre['id']}/unsubscribe")
    assert unsub["phone"]["state"] == "released" and 0 < unsub["refund_cents"] < 9000
    assert len(env.pool) == 0
    account = await env.api.get("/account")
    assert account["phones"] == {"released": 2}
    assert account["balance_cents"] == 10_000 - 3000 - 6000 - 7 + unsub["refund_cents"]
    err = await env.api.delete(f"/phones/{ond['id']}", expect=409)
    assert err["error"]["code"] == "phone_released"
    err = await env.api.post(f"/phones/{ond['id']}/start", expect=409)
    assert err["error"]["code"] == "phone_released"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"period": "week", "duration": 1}, "invalid_period"),
        ({"period": "month", "duration": 0}, "invalid_duration"),
        ({"period": "month", "duration": 37}, "invalid_duration"),
        ({"period": "year", "duration": "1"}, "invalid_duration"),
        ({}, "invalid_period"),
    ],
)
async def test_bad_renewals_are_refused_without_a_trace(
    env: Env, body: dict[str, Any], code: str
) -> None:
    await env.api.post("/account/recharge", {"amount_cents": 10_000})
    [pre] = (await env.api.post("/orders", order_body(1, "prepaid"), expect=201))["phones"]
    before = await env.snapshot()
    err = await env.api.post(f"/phones/{pre['id']}/renew", body, expect=400)
    assert err["error"]["code"] == code
    assert await env.snapshot() == before


async def test_wrong_billing_mode_over_http_is_409_without_a_trace(env: Env) -> None:
    await env.api.post("/account/recharge", {"amount_cents": 10_000})
    [pre] = (await env.api.post("/orders", order_body(1, "prepaid"), expect=201))["phones"]
    [ond] = (await env.api.post("/orders", order_body(1), expect=201))["phones"]
    before = await env.snapshot()
    for method, path, body in (
        ("DELETE", f"/phones/{pre['id']}", None),
        ("POST", f"/phones/{ond['id']}/renew", {"period": "month", "duration": 1}),
        ("POST", f"/phones/{ond['id']}/unsubscribe", None),
    ):
        err = await env.api.call(method, path, 409, json=body)
        assert err["error"]["code"] == "wrong_billing_mode"
    assert await env.snapshot() == before


async def test_phone_list_refuses_an_unknown_state_filter(env: Env) -> None:
    err = await env.api.get("/phones?state=bogus", expect=400)
    assert err["error"]["code"] == "invalid_query"


async def test_cli_admin_token_is_accepted_and_replaces_the_previous_one(
    aiohttp_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "cli.db")
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, admin_main, ["admin", "token", "--db", db]) == 0
    first = capsys.readouterr().out.strip()
    assert await loop.run_in_executor(None, admin_main, ["admin", "token", "--db", db]) == 0
    second = capsys.readouterr().out.strip()
    assert first != second and len(second) > 30
    app = web.Application()
    setup_control(
        app,
        make_pool(),
        config=make_config(db_path=db, admin_token=None),
        clock=ManualClock(),
        scheduler=False,
    )
    client = await aiohttp_client(app)
    ok = await client.get(f"{PREFIX}/account", headers={"Authorization": f"Bearer {second}"})
    assert ok.status == 200
    old = await client.get(f"{PREFIX}/account", headers={"Authorization": f"Bearer {first}"})
    assert old.status == 401
    none = await client.get(f"{PREFIX}/account", headers={"Authorization": "Bearer "})
    assert none.status == 401


def test_every_reference_in_the_openapi_document_resolves() -> None:
    doc = openapi_document()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    names = set(doc["components"]["schemas"])
    assert {r.rsplit("/", 1)[1] for r in refs} <= names
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (path, method)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path)), (path, method)
