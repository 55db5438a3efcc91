"""Notices to people outside our walls (SMS, e-mail): an outbox table and pluggable senders.

A notice is written to `outbox` in the same transaction as its cause (a code issued, a phone
bound), so it is never lost nor sent for something that rolled back; a delivery task hands
pending rows to the configured sender and marks them sent. Senders: the console (development,
`make run` prints codes), a JSONL file (tests read codes from it), and an HTTP webhook for a
real SMS/e-mail gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from cloudphone.edge.control.clock import Clock
from cloudphone.edge.control.store import Store, Tx

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Notice:
    id: int
    created_at: int
    channel: str  # "sms"
    recipient: str
    kind: str  # "verification_code", "phone_bound", ...
    body: str
    payload: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "channel": self.channel,
            "recipient": self.recipient,
            "kind": self.kind,
            "body": self.body,
            "payload": self.payload,
        }


class Sender(Protocol):
    async def send(self, notice: Notice) -> None:
        """Deliver or raise; a raise leaves the notice pending for a retry."""
        ...


class ConsoleSender:
    """Prints notices (development: the verification code appears in the terminal)."""

    async def send(self, notice: Notice) -> None:
        print(f"[{notice.channel} to {notice.recipient}] {notice.body}", flush=True)


class JsonlSender:
    """Appends each notice as one JSON line to a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _append(self, line: str) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    async def send(self, notice: Notice) -> None:
        line = json.dumps(notice.as_dict(), sort_keys=True)
        await asyncio.get_running_loop().run_in_executor(None, self._append, line)


class WebhookSender:
    """POSTs each notice as JSON to a gateway; any non-2xx answer is a failure to retry."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, timeout_s: float = 10.0
    ) -> None:
        self.url = url
        self.headers = headers or {}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(self, notice: Notice) -> None:
        async with aiohttp.ClientSession(timeout=self.timeout) as http:
            async with http.post(self.url, json=notice.as_dict(), headers=self.headers) as resp:
                if resp.status // 100 != 2:
                    raise RuntimeError(f"webhook answered {resp.status}")


async def enqueue(
    tx: Tx,
    now: int,
    recipient: str,
    kind: str,
    body: str,
    payload: dict[str, Any] | None = None,
    channel: str = "sms",
) -> int:
    """Write a notice in the caller's transaction."""
    return await tx.insert(
        "INSERT INTO outbox (created_at, channel, recipient, kind, body, payload)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (now, channel, recipient, kind, body, json.dumps(payload or {}, sort_keys=True)),
    )


class Notifier:
    """Delivers the outbox through one sender; `kick()` after a commit sends without waiting."""

    def __init__(self, store: Store, sender: Sender, clock: Clock) -> None:
        self.store = store
        self.sender = sender
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def kick(self) -> None:
        self._wake.set()

    async def flush(self) -> int:
        """Try every pending notice once; return how many were delivered."""
        async with self._lock:
            async with self.store.transaction() as tx:
                rows = await tx.fetchall(
                    "SELECT * FROM outbox WHERE sent_at IS NULL AND attempts < ? ORDER BY id",
                    (MAX_ATTEMPTS,),
                )
            sent = 0
            for row in rows:
                notice = Notice(
                    row["id"],
                    row["created_at"],
                    row["channel"],
                    row["recipient"],
                    row["kind"],
                    row["body"],
                    json.loads(row["payload"]),
                )
                error: str | None = None
                try:
                    await self.sender.send(notice)
                except Exception as exc:  # a gateway down must not stop the others
                    error = repr(exc)
                    log.warning("notice %s not delivered: %s", notice.id, error)
                async with self.store.transaction() as tx:
                    await tx.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
                        " sent_at = ? WHERE id = ?",
                        (error, None if error else int(self.clock.now()), notice.id),
                    )
                sent += error is None
            return sent

    async def _loop(self) -> None:
        while True:
            try:  # not wait_for: on 3.11 it can swallow a cancel that races the wake-up
                async with asyncio.timeout(30):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("outbox delivery failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="outbox")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
