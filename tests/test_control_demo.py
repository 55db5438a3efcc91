"""`make run`'s composition: the edge with --control-db and --demo seeds a tenant once."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cloudphone.edge.app import POOL, create_app
from cloudphone.edge.config import load_config


async def _boot(db: Path) -> TestServer:
    config = load_config(
        environ={},
        overrides={
            "ice_host_addresses": ["127.0.0.1"],
            "phones": 1,
            "admin_token": "demo-admin",
            "control_db": str(db),
            "demo": True,
            "size": "320x568",
        },
    )
    server = TestServer(create_app(config), host="127.0.0.1", port=0)
    await server.start_server()
    return server


async def test_demo_tenant_is_seeded_once_and_survives_a_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    headers = {"Authorization": "Bearer demo-admin"}
    for boot in range(2):
        server = await _boot(db)
        try:
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.get(server.make_url("/api/v1/users")) as resp:
                    users = (await resp.json())["users"]
                async with http.get(server.make_url("/api/v1/phones")) as resp:
                    phones = (await resp.json())["phones"]
            assert [(u["login"], u["role"], u["phones"]) for u in users] == [
                ("admin", "admin", 0),
                ("demo", "user", 2),
            ]
            assert [p["state"] for p in phones] == ["running", "running"]
            assert {p["user_id"] for p in phones} == {users[1]["id"]}
            pool = server.app[POOL]
            assert {p["id"] for p in phones} | {"phone-1"} == {g.guest_id for g in pool}
        finally:
            await server.close()
        out = capsys.readouterr().out
        assert "account 'demo'  password 'demo-pass-1234'" in out, boot


async def test_regions_zones_and_flavors_come_from_the_control_config_file(
    tmp_path: Path,
) -> None:
    toml = tmp_path / "control.toml"
    toml.write_text(
        'node_zones = ["ap-1b"]\nmax_count = 3\n'
        '[[regions]]\nname = "ap"\nzones = ["ap-1a", "ap-1b"]\ntitle = "Asia Pacific"\n'
        '[[flavors]]\nname = "tiny"\nwidth = 240\nheight = 426\nfps = 15\n'
        "on_demand_cents_per_hour = 3\nmonth_cents = 900\nyear_cents = 9000\n"
    )
    config = load_config(
        environ={},
        overrides={
            "ice_host_addresses": ["127.0.0.1"],
            "phones": 0,
            "admin_token": "t",
            "control_db": str(tmp_path / "c.db"),
            "control_config": str(toml),
        },
    )
    server = TestServer(create_app(config), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http:
            async with http.get(server.make_url("/api/v1/regions")) as resp:
                assert (await resp.json())["regions"] == [
                    {
                        "name": "ap",
                        "title": "Asia Pacific",
                        "zones": [
                            {"name": "ap-1a", "served": False},
                            {"name": "ap-1b", "served": True},
                        ],
                    }
                ]
            async with http.get(server.make_url("/api/v1/flavors")) as resp:
                assert [f["name"] for f in (await resp.json())["flavors"]] == ["tiny"]
            order = {
                "region": "ap",
                "zone": "ap-1b",
                "flavor": "tiny",
                "name": "t",
                "count": 4,
                "billing": {"mode": "on_demand"},
            }
            async with http.post(server.make_url("/api/v1/orders"), json=order) as resp:
                assert resp.status == 400  # above this file's max_count
            async with http.post(
                server.make_url("/api/v1/orders"), json={**order, "count": 2}
            ) as resp:
                assert resp.status == 201
                phones = (await resp.json())["phones"]
        assert {server.app[POOL].get(p["id"]).screen.width for p in phones} == {240}
    finally:
        await server.close()
