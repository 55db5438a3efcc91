"""The audit log: who entered which phone in which role, control changes, clipboard and invite use.

Entries are appended on the event loop (a dict into a bounded ring, O(1)) and, when a file or
a sink (the control plane's database) is configured, written by a background task in batches
so the loop never waits on a disk. `flush` waits until everything recorded so far is written;
a process killed before that loses at most the entries still queued. The edge's admin API reads
the ring, newest last, filtered by phone or action.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

RING_SIZE = 10_000


class AuditSink(Protocol):
    """Somewhere durable to keep entries (the control plane's store)."""

    async def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Keep these entries, all or none."""
        ...


class AuditLog:
    def __init__(
        self,
        path: str | Path | None = None,
        ring_size: int = RING_SIZE,
        sink: AuditSink | None = None,
    ) -> None:
        self.path = Path(path) if path else None
        self.sink = sink
        self._ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=ring_size)
        self._ids = itertools.count(1)
        self._pending: asyncio.Queue[dict[str, Any]] | None = None
        self._writer: asyncio.Task[None] | None = None

    def record(self, action: str, *, phone: str, actor: str, **details: Any) -> dict[str, Any]:
        """Append one entry (never blocks). `actor` is the identity that acted."""
        entry = {
            "id": next(self._ids),
            "at": round(time.time(), 3),
            "action": action,
            "phone": phone,
            "actor": actor,
            **details,
        }
        self._ring.append(entry)
        if self.path is not None or self.sink is not None:
            if self._pending is None:
                self._pending = asyncio.Queue()
                self._writer = asyncio.get_running_loop().create_task(self._write_loop())
            self._pending.put_nowait(entry)
        return entry

    def entries(
        self, *, phone: str | None = None, action: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        out = [
            e
            for e in self._ring
            if (phone is None or e["phone"] == phone)
            and (action is None or e["action"] == action or e["action"].startswith(action + "/"))
        ]
        return out[-limit:]

    async def _write_loop(self) -> None:
        assert self._pending is not None
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._pending.task_done()

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        """One batch to the file and the sink; a failure is logged, the entries stay in the
        ring, and the next batch is tried afresh."""
        if self.path is not None:
            text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in batch)
            try:
                await asyncio.to_thread(_append, self.path, text)
            except OSError:
                log.exception("audit: cannot write %s", self.path)
        sink = self.sink
        if sink is not None:
            try:
                await sink.write(batch)
            except Exception:
                log.exception("audit: the store refused %d entries", len(batch))

    async def flush(self) -> None:
        """Wait until every entry recorded so far is written."""
        if self._pending is not None:
            await self._pending.join()

    async def close(self) -> None:
        """Flush what is queued, then stop the writer."""
        if self._writer is None or self._pending is None:
            return
        await self._pending.join()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = self._pending = None


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)
