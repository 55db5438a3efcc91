"""The outbox and its senders: written with their cause, delivered, retried on failure."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cloudphone.edge.control import ManualClock
from cloudphone.edge.control.notifier import (
    MAX_ATTEMPTS,
    ConsoleSender,
    JsonlSender,
    Notifier,
    WebhookSender,
    enqueue,
)
from cloudphone.edge.control.sqlite_store import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "n.db"))
    await s.open()
    yield s
    await s.close()


async def _pending(store: SQLiteStore) -> list[dict[str, Any]]:
    async with store.transaction() as tx:
        return await tx.fetchall("SELECT * FROM outbox WHERE sent_at IS NULL")


async def test_a_notice_rolled_back_with_its_cause_is_never_sent(
    store: SQLiteStore, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    notifier = Notifier(store, JsonlSender(out), ManualClock())
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await enqueue(tx, 1, "+100", "phone_bound", "never")
            raise RuntimeError("the binding failed")
    async with store.transaction() as tx:
        await enqueue(tx, 2, "+100", "phone_bound", "bound", {"phone_id": "p"})
    assert await notifier.flush() == 1
    [line] = out.read_text().splitlines()
    assert json.loads(line)["body"] == "bound"
    assert await notifier.flush() == 0  # sent once only


async def test_webhook_sender_posts_and_failures_are_retried(
    store: SQLiteStore, aiohttp_server: Any
) -> None:
    received: list[dict[str, Any]] = []
    answers = [500, 200]

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=answers.pop(0) if answers else 200)

    app = web.Application()
    app.router.add_post("/sms", hook)
    server = await aiohttp_server(app, host="127.0.0.1")
    notifier = Notifier(store, WebhookSender(str(server.make_url("/sms"))), ManualClock())
    async with store.transaction() as tx:
        await enqueue(
            tx, 1, "+8613800000000", "verification_code", "code 123456", {"code": "123456"}
        )
    assert await notifier.flush() == 0  # the gateway answered 500
    [pending] = await _pending(store)
    assert pending["attempts"] == 1 and "500" in pending["last_error"]
    assert await notifier.flush() == 1
    assert await _pending(store) == []
    assert [r["recipient"] for r in received] == ["+8613800000000"] * 2
    assert received[1]["payload"] == {"code": "123456"}


async def test_a_notice_that_keeps_failing_stops_being_tried(
    store: SQLiteStore, aiohttp_server: Any
) -> None:
    calls = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/sms", hook)
    server = await aiohttp_server(app, host="127.0.0.1")
    notifier = Notifier(store, WebhookSender(str(server.make_url("/sms"))), ManualClock())
    async with store.transaction() as tx:
        await enqueue(tx, 1, "+1", "x", "y")
    for _ in range(MAX_ATTEMPTS + 2):
        await notifier.flush()
    assert calls == MAX_ATTEMPTS


async def test_console_sender_prints_the_notice(
    store: SQLiteStore, capsys: pytest.CaptureFixture[str]
) -> None:
    notifier = Notifier(store, ConsoleSender(), ManualClock())
    async with store.transaction() as tx:
        await enqueue(tx, 1, "+8613800000000", "verification_code", "your code is 000111")
    await notifier.flush()
    assert "[sms to +8613800000000] your code is 000111" in capsys.readouterr().out
