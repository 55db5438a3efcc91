"""The audit log in the control plane's store, and the filtered, paged reads of `/api/v1/audit`.

Implements the edge's `AuditSink`: each batch the edge's audit writer hands over is one
transaction. An entry is stamped with the organisation that owned the phone when it was
written, so a phone given to another organisation later does not take its history along.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cloudphone.edge.control.store import Row, Store

log = logging.getLogger(__name__)

CORE = ("id", "at", "action", "phone", "actor")


def entry_dict(row: Row) -> dict[str, Any]:
    try:
        details = json.loads(row["details"])
    except ValueError:
        details = {}
    return {
        "id": row["id"],
        "at": row["at"],
        "phone": row["phone_id"],
        "org_id": row["org_id"],
        "actor": row["actor"],
        "action": row["action"],
        "details": details if isinstance(details, dict) else {},
    }


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


class StoredAudit:
    """The `AuditSink` of the control plane, and its reader."""

    def __init__(self, store: Store, retention_days: int = 0) -> None:
        self.store = store
        self.retention_days = retention_days
        self._next_prune = 0

    async def prune(self, now: int) -> None:
        """Delete entries older than the retention (at most once an hour: a billing chore runs
        every few seconds). Without it the table only grows."""
        if self.retention_days <= 0 or now < self._next_prune:
            return
        self._next_prune = now + 3600
        async with self.store.transaction() as tx:
            await tx.execute("DELETE FROM audit WHERE at < ?", (now - self.retention_days * 86400,))

    async def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
        async with self.store.transaction() as tx:
            for entry in entries:
                details = {k: v for k, v in entry.items() if k not in CORE}
                await tx.execute(
                    "INSERT INTO audit (at, phone_id, org_id, actor, action, details)"
                    " VALUES (?, ?, (SELECT u.org_id FROM phones p JOIN users u"
                    " ON u.id = p.user_id WHERE p.id = ?), ?, ?, ?)",
                    (
                        float(entry["at"]),
                        str(entry["phone"]),
                        str(entry["phone"]),
                        str(entry["actor"]),
                        str(entry["action"]),
                        json.dumps(details, default=str, separators=(",", ":")),
                    ),
                )

    async def entries(
        self,
        *,
        orgs: Sequence[int] | None,
        phone: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first. `orgs` None: every entry; else only those of these organisations.
        `action` matches itself and, as a prefix, `action/...`."""
        sql = "SELECT * FROM audit WHERE 1 = 1"
        params: list[Any] = []
        if orgs is not None:
            if not orgs:
                return []
            sql += f" AND org_id IN ({', '.join('?' for _ in orgs)})"
            params.extend(orgs)
        for column, value in (("phone_id", phone), ("actor", actor)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if action is not None:
            sql += " AND (action = ? OR action LIKE ? ESCAPE '\\')"
            params.extend([action, _like_prefix(action)])
        if since is not None:
            sql += " AND at >= ?"
            params.append(since)
        if until is not None:
            sql += " AND at < ?"
            params.append(until)
        if before is not None:
            sql += " AND id < ?"
            params.append(before)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(sql, params)
        return [entry_dict(r) for r in rows]
