"""The control plane as one object: store, fleet, orders and billing wired together.

`ControlPlane.start` opens the store, repairs what a crash left half done and puts the pool back
in the state the store records; `close` meters once more and stops the scheduler. It also keeps
what sharing needs beyond a restart (invites, policies, the audit log) through the edge's
store interfaces; the edge is wired to them by the composition root.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cloudphone.edge.control import ledger
from cloudphone.edge.control import phones as ph
from cloudphone.edge.control.audit_db import StoredAudit
from cloudphone.edge.control.auth import AdminAuth
from cloudphone.edge.control.billing import Billing, Effects, unfreeze_if_paid
from cloudphone.edge.control.clock import Clock, SystemClock
from cloudphone.edge.control.config import ControlConfig
from cloudphone.edge.control.connect import ConnectTokens, ControlAuthorizer
from cloudphone.edge.control.directory import Directory
from cloudphone.edge.control.errors import bad_request
from cloudphone.edge.control.fleet import Disconnect, Fleet
from cloudphone.edge.control.invites_db import StoredInvites
from cloudphone.edge.control.ledger import DEFAULT_ACCOUNT, EntryKind
from cloudphone.edge.control.login import Logins
from cloudphone.edge.control.notifier import (
    ConsoleSender,
    JsonlSender,
    Notifier,
    Sender,
    WebhookSender,
)
from cloudphone.edge.control.orders import Orders
from cloudphone.edge.control.phones import PhoneState
from cloudphone.edge.control.policies_db import StoredPolicyBook
from cloudphone.edge.control.store import Store
from cloudphone.edge.policy import PolicyBook
from cloudphone.vm.pool import InstancePool

log = logging.getLogger(__name__)


def sender_from(spec: str) -> Sender:
    """`console`, `jsonl:<path>` or `webhook:<url>` (see ControlConfig.notify)."""
    kind, _, arg = spec.partition(":")
    if kind == "console":
        return ConsoleSender()
    if kind == "jsonl" and arg:
        return JsonlSender(arg)
    if kind == "webhook" and arg:
        return WebhookSender(arg)
    raise ValueError(f"notify must be console, jsonl:<path> or webhook:<url>, not {spec!r}")


class ControlPlane:
    """Everything behind `/api/v1`."""

    def __init__(
        self,
        pool: InstancePool,
        store: Store,
        config: ControlConfig | None = None,
        clock: Clock | None = None,
        *,
        scheduler: bool = True,
        disconnect: Disconnect | None = None,
        sender: Sender | None = None,
        policies: PolicyBook | None = None,
    ) -> None:
        self.config = config or ControlConfig()
        self.clock = clock or SystemClock()
        self.store = store
        self.pool = pool
        self.fleet = Fleet(pool, self.config, disconnect)
        lock = asyncio.Lock()
        self.lock = lock
        self.billing = Billing(store, self.fleet, self.config, self.clock, lock)
        self.orders = Orders(store, self.fleet, self.config, self.clock, lock)
        self.auth = AdminAuth(store, self.config.admin_token)
        self.account_id = DEFAULT_ACCOUNT
        self.notices = Notifier(store, sender or sender_from(self.config.notify), self.clock)
        self.directory = Directory(store, self.clock, self.fleet, self.notices, self.account_id)
        self.logins = Logins(store, self.clock, self.config, self.notices)
        self.tokens = ConnectTokens(store, self.clock, self.config.connect_token_ttl_s)
        self.authorizer = ControlAuthorizer(store, self.tokens, self.auth)
        self.billing.chores.append(self.logins.prune)
        # Sharing: the edge's invite book and audit log use these when wired to them; the
        # policy book (the edge's, or a fresh one) keeps its policies here and reloads who owns
        # which phone whenever the directory changes that.
        self.invite_store = StoredInvites(store, self.clock.now)
        self.audit_store = StoredAudit(store, self.config.audit_retention_days)
        self.billing.chores.append(self.audit_store.prune)
        self.policies = policies if policies is not None else PolicyBook()
        self.policies.store = StoredPolicyBook(store, self.clock.now)
        self.directory.changed.append(self.policies.load)
        self._scheduler = scheduler
        self._closed = False

    def now(self) -> int:
        return int(self.clock.now())

    async def start(self) -> None:
        await self.store.open()
        async with self.store.transaction() as tx:
            await ledger.ensure_account(tx, self.account_id, "default", self.now())
        await self.tokens.load()
        await self.policies.load()
        await self.reconcile()
        self.notices.start()
        self.notices.kick()  # anything left from before a restart
        if self._scheduler:
            self.billing.start()

    async def close(self) -> None:
        """Stop the scheduler, meter up to now (a clean stop loses no second), close the store."""
        if self._closed:
            return
        self._closed = True
        await self.notices.stop()
        await self.billing.stop()
        try:
            async with self.lock:
                await self.billing.meter_all(self.now())
        finally:
            await self.store.close()

    async def reconcile(self) -> None:
        """After a start: fail half-built orders, restart metering, rebuild the pool."""
        now = self.now()
        async with self.store.transaction() as tx:
            orders = await tx.fetchall("SELECT id FROM orders WHERE state = 'creating'")
            # Seconds between the last metering and a crash are not known; time the edge was
            # down is not billed. Metering resumes now for phones that should run.
            await tx.execute(
                "UPDATE phones SET metered_until = ? WHERE state = ? AND metered_until < ?",
                (now, PhoneState.RUNNING, now),
            )
        for order in orders:
            await self.orders.fail_order(order["id"], "the edge restarted while creating it")
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT id, flavor, state FROM phones WHERE state IN (?, ?, ?, ?)",
                tuple(ph.LIVE_STATES),
            )
        for row in rows:
            flavor = self.config.flavor(row["flavor"])
            if flavor is None:
                log.error("phone %s has unknown flavor %s; not restored", row["id"], row["flavor"])
                continue
            await self.fleet.ensure(row["id"], flavor, row["state"] == PhoneState.RUNNING)

    # -- account ------------------------------------------------------------------------------

    async def account(self) -> dict[str, Any]:
        async with self.store.transaction() as tx:
            row = await ledger.account(tx, self.account_id)
            counts = await tx.fetchall(
                "SELECT state, COUNT(*) AS n FROM phones WHERE account_id = ? GROUP BY state",
                (self.account_id,),
            )
        return {
            "id": row["id"],
            "name": row["name"],
            "balance_cents": row["balance_cents"],
            "phones": {c["state"]: c["n"] for c in counts},
        }

    async def recharge(self, amount: Any) -> int:
        """Add money; a balance back at >= 0 unfreezes the account's phones."""
        limit = self.config.max_recharge_cents
        if type(amount) is not int or not 1 <= amount <= limit:
            raise bad_request("invalid_amount", f"amount_cents must be an integer 1..{limit}")
        now = self.now()
        fx = Effects()
        async with self.lock:
            async with self.store.transaction() as tx:
                balance = await ledger.credit(tx, self.account_id, EntryKind.RECHARGE, amount, now)
                await unfreeze_if_paid(tx, self.account_id, now, fx)
            await fx.apply(self.fleet)
        return balance

    async def ledger_entries(self, limit: int, before: int | None) -> list[dict[str, Any]]:
        async with self.store.transaction() as tx:
            return await tx.fetchall(
                "SELECT id, at, kind, amount_cents, balance_after_cents, order_id, phone_id, memo"
                " FROM ledger WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (self.account_id, before if before is not None else 2**62, limit),
            )

    # -- phones -------------------------------------------------------------------------------

    async def phones(self, state: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM phones WHERE account_id = ?"
        params: list[Any] = [self.account_id]
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(sql + " ORDER BY created_at, name", params)
        return [ph.as_dict(r) for r in rows]

    async def phone(self, phone_id: str) -> dict[str, Any]:
        async with self.store.transaction() as tx:
            return ph.as_dict(await ph.get(tx, phone_id, self.account_id))
