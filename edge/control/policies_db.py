"""Security policies in the control plane's store: what each organisation and phone sets.

Implements the edge's `PolicyStore`. Rows hold only the fields set (a JSON object), so the
layers stay layers after a restart. A phone's organisation is its owner's (`phones.user_id` →
`users.org_id`), read on every load; organisations are keyed by their id as text, or
`default`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from cloudphone.edge.control.store import Store
from cloudphone.edge.policy import StoredPolicies

log = logging.getLogger(__name__)


def _fields(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        log.warning("policy of %s: stored fields are not a JSON object; ignored", where)
        return {}
    return value


class StoredPolicyBook:
    """The `PolicyStore` of the control plane."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    async def load(self) -> StoredPolicies:
        async with self.store.transaction() as tx:
            orgs = await tx.fetchall("SELECT org, fields FROM org_policies")
            phones = await tx.fetchall("SELECT phone_id, fields FROM phone_policies")
            owners = await tx.fetchall(
                "SELECT p.id, u.org_id FROM phones p LEFT JOIN users u ON u.id = p.user_id"
            )
        return StoredPolicies(
            orgs={r["org"]: _fields(r["fields"], f"organisation {r['org']}") for r in orgs},
            phones={r["phone_id"]: _fields(r["fields"], f"phone {r['phone_id']}") for r in phones},
            phone_orgs={
                r["id"]: str(r["org_id"]) if r["org_id"] is not None else None for r in owners
            },
        )

    async def save_org(self, org: str, fields: Mapping[str, Any]) -> None:
        await self._save("org_policies", "org", org, fields)

    async def save_phone(self, instance: str, fields: Mapping[str, Any]) -> None:
        await self._save("phone_policies", "phone_id", instance, fields)

    async def _save(self, table: str, key: str, value: str, fields: Mapping[str, Any]) -> None:
        async with self.store.transaction() as tx:
            if not fields:
                await tx.execute(f"DELETE FROM {table} WHERE {key} = ?", (value,))
                return
            await tx.execute(
                f"INSERT INTO {table} ({key}, fields, updated_at) VALUES (?, ?, ?)"
                f" ON CONFLICT({key}) DO UPDATE SET fields = excluded.fields,"
                " updated_at = excluded.updated_at",
                (value, json.dumps(dict(fields), sort_keys=True), int(self.clock())),
            )
