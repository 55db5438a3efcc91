"""`make run`'s composition: the edge with --control-db and --demo seeds a tenant once."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cloudphone.edge.app import POOL, create_app
from cloudphone.edge.config import load_config


async def _boot(db: Path) -> TestServer:
    config = load_config(environ={}, overrides={
        "ice_host_addresses": ["127.0.0.1"], "phones": 1, "admin_token": "demo-admin",
        "control_db": str(db), "demo": True, "size": "320x568"})
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
                ("admin", "admin", 0), ("demo", "user", 2)]
            assert [p["state"] for p in phones] == ["running", "running"]
            assert {p["user_id"] for p in phones} == {users[1]["id"]}
            pool = server.app[POOL]
            assert {p["id"] for p in phones} | {"phone-1"} == {g.guest_id for g in pool}
        finally:
            await server.close()
        out = capsys.readouterr().out
        assert "account 'demo'  password 'demo-pass-1234'" in out, boot
