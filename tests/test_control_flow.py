"""The control plane inside a real edge: buy phones over HTTP, stream one with aiortc, delete it.

Real composition root, real simulated phones, real WebRTC over loopback; only the clock is
injected, so an hour of use is billed in a second.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cloudphone.edge.app import NODE, POOL, create_app
from cloudphone.edge.client import PhoneClient
from cloudphone.edge.config import load_config
from cloudphone.edge.control import ControlConfig, ControlPlane, Flavor, ManualClock, setup_control
from cloudphone.vm.guest import GuestState

from tests.conftest import eventually

TOKEN = "flow-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FLAVOR = Flavor(
    "probe",
    320,
    568,
    30,
    on_demand_cents_per_hour=360,
    month_cents=1000,
    year_cents=10000,
    guest_options={"stamp": True},
)


class Site:
    def __init__(
        self,
        server: TestServer,
        http: aiohttp.ClientSession,
        plane: ControlPlane,
        clock: ManualClock,
    ) -> None:
        self.server, self.http, self.plane, self.clock = server, http, plane, clock
        self.clients: list[PhoneClient] = []

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def call(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        async with self.http.request(
            method, self.url("/api/v1" + path), headers=AUTH, **kw
        ) as resp:
            body = await resp.json()
            assert resp.status == expect, body
            return body

    async def viewer(self, instance: str) -> PhoneClient:
        client = await PhoneClient.connect(
            self.http, self.url("/ws"), instance, token=TOKEN, codec="h264"
        )
        self.clients.append(client)
        return client


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
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
    clock = ManualClock(start=time.time())
    control = ControlConfig(flavors=(FLAVOR,), db_path=str(tmp_path / "flow.db"), admin_token=TOKEN)
    plane = setup_control(
        app,
        app[POOL],
        config=control,
        clock=clock,
        scheduler=False,
        disconnect=app[NODE].disconnect_instance,
    )
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    http = aiohttp.ClientSession()
    s = Site(server, http, plane, clock)
    yield s
    for client in s.clients:
        await client.close()
    await http.close()
    await server.close()


async def test_recharge_buy_three_stream_one_delete_and_bill(site: Site) -> None:
    await site.call("POST", "/account/recharge", json={"amount_cents": 5000})
    began = time.monotonic()
    order = await site.call(
        "POST",
        "/orders",
        201,
        json={
            "region": "cn-east",
            "zone": "cn-east-b",
            "flavor": "probe",
            "name": "demo",
            "count": 3,
            "billing": {"mode": "on_demand"},
        },
    )
    assert time.monotonic() - began < 5.0  # running and streamable within 5 s
    phones = order["phones"]
    assert [p["name"] for p in phones] == ["demo-0001", "demo-0002", "demo-0003"]
    pool = site.server.app[POOL]
    assert all(pool.get(p["id"]).state == GuestState.RUNNING for p in phones)
    target = phones[1]["id"]

    client = await site.viewer(target)
    assert client.welcome["screen"]["width"] == 320
    await client.wait_for_frame(lambda f: f.stamp is not None, timeout=15)
    seq = client.touch("down", 0.5, 0.5)
    frame = await client.wait_for_frame(
        lambda f: f.stamp is not None and f.stamp.input_seq >= seq, timeout=15
    )
    assert frame.stamp is not None and frame.stamp.input_seq == seq

    site.clock.advance(3600)
    await site.plane.billing.tick()  # the hourly bill: 3 phones x 360 c/h
    assert (await site.call("GET", "/account"))["balance_cents"] == 5000 - 3 * 360
    site.clock.advance(90)
    deleted = await site.call("DELETE", f"/phones/{target}")
    assert deleted["final_bill_cents"] == 90 * 360 // 3600 == 9
    assert deleted["phone"]["state"] == "released"
    await eventually(lambda: client.closed_reason is not None)
    assert client.closed_reason == "released: the phone was deleted"
    assert target not in pool and len(pool) == 2

    ledger = (await site.call("GET", "/ledger"))["entries"]
    assert [(e["kind"], e["amount_cents"]) for e in ledger][:2] == [("usage", -9), ("usage", -360)]
    assert sum(e["amount_cents"] for e in ledger) == 5000 - 3 * 360 - 9
    assert (await site.call("GET", "/account"))["balance_cents"] == 5000 - 3 * 360 - 9


async def test_arrears_disconnect_viewers_and_a_recharge_brings_the_phone_back(
    site: Site,
) -> None:
    order = await site.call(
        "POST",
        "/orders",
        201,
        json={
            "region": "eu-west",
            "zone": "eu-west-a",
            "flavor": "probe",
            "name": "debt",
            "count": 1,
            "billing": {"mode": "on_demand"},
        },
    )
    phone_id = order["phones"][0]["id"]
    client = await site.viewer(phone_id)
    await client.wait_for_frame(lambda f: f.stamp is not None, timeout=15)
    site.clock.advance(3600)
    await site.plane.billing.tick()  # balance 0 - 360: frozen
    await eventually(lambda: client.closed_reason is not None)
    assert client.closed_reason == "stopped: the account is in arrears"
    assert site.server.app[POOL].get(phone_id).state == GuestState.STOPPED
    await site.call("POST", "/account/recharge", json={"amount_cents": 360})
    assert (await site.call("GET", f"/phones/{phone_id}"))["state"] == "running"
    again = await site.viewer(phone_id)
    await again.wait_for_frame(lambda f: f.stamp is not None, timeout=15)
