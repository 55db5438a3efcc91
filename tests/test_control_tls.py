"""Over TLS the login cookies are Secure (and stay HttpOnly, SameSite=Strict)."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cloudphone.edge.control import ManualClock, setup_control
from cloudphone.edge.control.notifier import JsonlSender

from tests.control_support import make_config, make_pool

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="TLS TEST SKIPPED: no openssl to make a certificate"
)


async def _self_signed(tmp: Path) -> ssl.SSLContext:
    proc = await asyncio.create_subprocess_exec(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(tmp / "key.pem"),
        "-out",
        str(tmp / "cert.pem"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await proc.wait() == 0
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return ctx


async def test_login_cookies_are_secure_over_tls(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    app = web.Application()
    plane = setup_control(
        app,
        make_pool(),
        config=make_config(db_path=str(tmp_path / "t.db")),
        clock=ManualClock(),
        scheduler=False,
        sender=JsonlSender(outbox),
    )
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server(ssl=await _self_signed(tmp_path))
    try:
        org = await plane.directory.create_org({"name": "O"})
        await plane.directory.create_user(
            {
                "login": "tls-user",
                "name": "T",
                "mobile": "+100000001",
                "org_id": org["id"],
                "password": "long enough",
            }
        )
        assert str(server.make_url("/")).startswith("https://")
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.post(
                server.make_url("/api/v1/auth/login"),
                ssl=False,
                json={"account": "tls-user", "password": "long enough"},
            ) as r:
                challenge = (await r.json())["challenge"]
            await plane.notices.flush()
            code = json.loads(outbox.read_text().splitlines()[-1])["payload"]["code"]
            async with http.post(
                server.make_url("/api/v1/auth/verify"),
                ssl=False,
                json={"challenge": challenge, "code": code, "trust_browser": True},
            ) as r:
                assert r.status == 200
                cookies = r.headers.getall("Set-Cookie")
        assert len(cookies) == 2
        for cookie in cookies:
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    finally:
        await server.close()
