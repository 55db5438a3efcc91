"""A real edge with the control plane on 127.0.0.1, and browser-like HTTP clients for it.

Each `Browser` has its own cookie jar and sends the CSRF header on writes, as the H5 pages do;
verification codes are read from the JSONL outbox file, as a person reads their SMS.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cloudphone.edge.app import NODE, POOL, SIGNALING, create_app, keep_sharing_in
from cloudphone.edge.client import PhoneClient
from cloudphone.edge.config import load_config
from cloudphone.edge.control import ControlConfig, ControlPlane, Flavor, ManualClock, setup_control
from cloudphone.edge.control.notifier import JsonlSender
from cloudphone.edge.control.openapi import openapi_document
from cloudphone.edge.sharing.invites import InviteAuthorizer

from tests.control_support import LedgerGuest, check_documented, make_pool

TOKEN = "site-admin-token"
DOC = openapi_document()
PROBE = Flavor(
    "probe",
    320,
    568,
    30,
    on_demand_cents_per_hour=360,
    month_cents=1000,
    year_cents=10000,
    guest_options={"stamp": True},
)
QUIET = Flavor(
    "quiet",
    320,
    568,
    30,
    on_demand_cents_per_hour=360,
    month_cents=1000,
    year_cents=10000,
    guest_kind="ledger",
)


class Browser:
    """One browser: cookies, the CSRF token from the last login, JSON calls under /api/v1."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.last: aiohttp.ClientResponse | None = None

    async def call(
        self,
        method: str,
        path: str,
        expect: int = 200,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        csrf: bool = True,
    ) -> Any:
        hdrs = dict(headers or {})
        if csrf and self.csrf:
            hdrs["X-CSRF-Token"] = self.csrf
        async with self.http.request(
            method, self.site.url("/api/v1" + path), json=json_body, headers=hdrs
        ) as resp:
            body = await resp.json()
            self.last = resp
            assert resp.status == expect, (resp.status, body)
            check_documented(DOC, method, path, resp.status, body)
            return body

    async def login(self, account: str, password: str, expect: int = 200) -> Any:
        reply = await self.call(
            "POST", "/auth/login", expect, json_body={"account": account, "password": password}
        )
        if reply.get("status") == "session":
            self.csrf = reply["csrf_token"]
        return reply

    async def verify(
        self, challenge: str, code: str, trust: bool = False, expect: int = 200
    ) -> Any:
        reply = await self.call(
            "POST",
            "/auth/verify",
            expect,
            json_body={"challenge": challenge, "code": code, "trust_browser": trust},
        )
        if expect == 200:
            self.csrf = reply["csrf_token"]
        return reply

    async def full_login(self, account: str, password: str, trust: bool = False) -> Any:
        reply = await self.login(account, password)
        if reply["status"] == "challenge":
            code = await self.site.code_for(reply["challenge"])
            reply = await self.verify(reply["challenge"], code, trust)
        return reply

    def cookie(self, name: str) -> str | None:
        for c in self.http.cookie_jar:
            if c.key == name:
                return c.value
        return None

    async def close(self) -> None:
        await self.http.close()


class Site:
    def __init__(
        self, server: TestServer, plane: ControlPlane, clock: ManualClock, outbox: Path
    ) -> None:
        self.server, self.plane, self.clock, self.outbox = server, plane, clock, outbox
        self.browsers: list[Browser] = []
        self.clients: list[PhoneClient] = []
        self.admin = self.browser()
        self.admin.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def browser(self) -> Browser:
        b = Browser(self)
        self.browsers.append(b)
        return b

    def notices(self) -> list[dict[str, Any]]:
        if not self.outbox.exists():
            return []
        return [json.loads(line) for line in self.outbox.read_text().splitlines()]

    async def code_for(self, challenge: str) -> str:
        """The code the SMS for `challenge` carried, once the outbox delivered it."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for notice in self.notices():
                if notice["payload"].get("challenge") == challenge:
                    return str(notice["payload"]["code"])
            await asyncio.sleep(0.02)
        raise AssertionError(f"no code was sent for {challenge}")

    async def seed(
        self, *, users: int = 2, password: str = "correct horse 1", money: int = 100_000
    ) -> dict[str, Any]:
        """An org, `users` users (user0, user1...), money, and no phones yet."""
        org = await self.admin.call("POST", "/orgs", 201, json_body={"name": "Sales"})
        made = []
        for i in range(users):
            made.append(
                await self.admin.call(
                    "POST",
                    "/users",
                    201,
                    json_body={
                        "login": f"user{i}",
                        "name": f"User {i}",
                        "mobile": f"+861380000{i:04d}",
                        "org_id": org["id"],
                        "password": password,
                    },
                )
            )
        if money:
            await self.admin.call("POST", "/account/recharge", json_body={"amount_cents": money})
        return {"org": org, "users": made, "password": password}

    async def buy(self, count: int = 1, flavor: str = "quiet", name: str = "ph") -> list[str]:
        order = await self.admin.call(
            "POST",
            "/orders",
            201,
            json_body={
                "region": "cn-east",
                "zone": "cn-east-a",
                "flavor": flavor,
                "name": name,
                "count": count,
                "billing": {"mode": "on_demand"},
            },
        )
        return [p["id"] for p in order["phones"]]

    async def viewer(self, instance: str, token: str | None) -> PhoneClient:
        client = await PhoneClient.connect(
            self.browsers[0].http, self.url("/ws"), instance, token=token, codec="h264"
        )
        self.clients.append(client)
        return client


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Site]:
    config = load_config(
        environ={},
        overrides={
            "ice_host_addresses": ["127.0.0.1"],
            "phones": 0,
            "admin_token": TOKEN,
            "dev_mode": False,
        },
    )
    app = create_app(config)
    app[POOL].register_kind("ledger", LedgerGuest)
    make_pool()  # resets the test guest's counters
    clock = ManualClock(start=time.time())
    outbox = tmp_path / "outbox.jsonl"
    control = ControlConfig(
        flavors=(PROBE, QUIET), db_path=str(tmp_path / "site.db"), admin_token=TOKEN
    )
    plane = setup_control(
        app,
        app[POOL],
        config=control,
        clock=clock,
        scheduler=False,
        disconnect=app[NODE].disconnect_instance,
        sender=JsonlSender(outbox),
        policies=app[NODE].policies,
    )
    # Wired as create_app wires it with --control-db: invites first, sharing in the store.
    app[SIGNALING].authorizer = InviteAuthorizer(
        app[NODE].invites, plane.authorizer, app[NODE].audit
    )
    keep_sharing_in(app, app[NODE], plane)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    s = Site(server, plane, clock, outbox)
    yield s
    for client in s.clients:
        await client.close()
    for b in s.browsers:
        await b.close()
    await server.close()
