"""Metering, hourly billing, arrears, prepaid expiry, and the scheduler task that drives them.

Usage is kept as cumulative counters on each phone: `metered_seconds` (seconds of running time
accounted, up to `metered_until`) and `billed_cents`. Metering and billing are separate
transactions, and a bill is always `usage_cents(metered_seconds) - billed_cents`, so a crash
between them (or a bill run twice) neither loses a metered second nor bills one twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cloudphone.edge.control import ledger
from cloudphone.edge.control.clock import Clock
from cloudphone.edge.control.config import ControlConfig
from cloudphone.edge.control.fleet import Fleet
from cloudphone.edge.control.ledger import EntryKind
from cloudphone.edge.control.money import usage_cents
from cloudphone.edge.control.phones import Mode, PhoneState
from cloudphone.edge.control.store import Row, Store, Tx

log = logging.getLogger(__name__)

REASON_ARREARS = "released: the account stayed in arrears"
REASON_EXPIRED = "released: the prepaid period ended"
REASON_FROZEN = "stopped: the account is in arrears"
REASON_EXPIRING = "stopped: the prepaid period ended"


@dataclass
class Effects:
    """Pool actions decided inside a transaction, carried out after it commits."""

    stop: list[tuple[str, str]] = field(default_factory=list)  # (phone id, reason)
    start: list[tuple[str, str]] = field(default_factory=list)  # (phone id, flavor)
    remove: list[tuple[str, str]] = field(default_factory=list)  # (phone id, reason)

    async def apply(self, fleet: Fleet) -> None:
        for phone_id, reason in self.stop:
            await fleet.stop(phone_id, reason)
        for phone_id, flavor in self.start:
            await fleet.start(phone_id, fleet.config.flavor(flavor))
        for phone_id, reason in self.remove:
            await fleet.remove(phone_id, reason)


async def meter_phone(tx: Tx, row: Row, now: int) -> None:
    """Account the running seconds of one on-demand phone up to `now`."""
    if row["mode"] != Mode.ON_DEMAND or row["state"] != PhoneState.RUNNING:
        return
    until = row["metered_until"]
    if until is None or now <= until:
        return
    await tx.execute(
        "UPDATE phones SET metered_seconds = metered_seconds + ?, metered_until = ? WHERE id = ?",
        (now - until, now, row["id"]),
    )


async def bill_phone(tx: Tx, phone_id: str, now: int) -> int:
    """Charge what the metered seconds cost beyond what was billed; return the cents charged."""
    row = await tx.fetchone("SELECT * FROM phones WHERE id = ?", (phone_id,))
    assert row is not None
    due = usage_cents(row["metered_seconds"], row["price_cents_per_hour"]) - row["billed_cents"]
    if due <= 0:
        return 0
    await tx.execute(
        "UPDATE phones SET billed_cents = billed_cents + ? WHERE id = ?", (due, phone_id)
    )
    await ledger.debit(
        tx,
        row["account_id"],
        EntryKind.USAGE,
        due,
        now,
        phone_id=phone_id,
        memo=f"{row['metered_seconds']} s metered in total",
    )
    return due


async def freeze_if_in_arrears(tx: Tx, account_id: int, now: int, fx: Effects) -> None:
    """A negative balance stops the account's on-demand phones (data kept)."""
    if await ledger.balance(tx, account_id) >= 0:
        return
    rows = await tx.fetchall(
        "SELECT * FROM phones WHERE account_id = ? AND mode = ? AND state IN (?, ?)",
        (account_id, Mode.ON_DEMAND, PhoneState.RUNNING, PhoneState.STOPPED),
    )
    for row in rows:
        await meter_phone(tx, row, now)
        await tx.execute(
            "UPDATE phones SET state = ?, frozen_from = state, frozen_at = ? WHERE id = ?",
            (PhoneState.FROZEN, now, row["id"]),
        )
        if row["state"] == PhoneState.RUNNING:
            fx.stop.append((row["id"], REASON_FROZEN))


async def unfreeze_if_paid(tx: Tx, account_id: int, now: int, fx: Effects) -> None:
    """A balance back at zero or above returns frozen phones to what they were."""
    if await ledger.balance(tx, account_id) < 0:
        return
    rows = await tx.fetchall(
        "SELECT * FROM phones WHERE account_id = ? AND state = ?", (account_id, PhoneState.FROZEN)
    )
    for row in rows:
        back = row["frozen_from"] or PhoneState.RUNNING
        await tx.execute(
            "UPDATE phones SET state = ?, frozen_from = NULL, frozen_at = NULL, metered_until = ?"
            " WHERE id = ?",
            (back, now, row["id"]),
        )
        if back == PhoneState.RUNNING:
            fx.start.append((row["id"], row["flavor"]))


class Billing:
    """Runs the periodic work: meter, bill what is due, freeze/release, expire/release."""

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        config: ControlConfig,
        clock: Clock,
        lock: asyncio.Lock,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.config = config
        self.clock = clock
        self.lock = lock  # shared with phone actions so pool effects never interleave
        self.ticks = 0
        # Other periodic work (login housekeeping) run after each round: f(now).
        self.chores: list[Callable[[int], Awaitable[None]]] = []
        self._ticked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def now(self) -> int:
        return int(self.clock.now())

    async def meter_all(self, now: int) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE phones SET metered_seconds = metered_seconds + (? - metered_until),"
                " metered_until = ? WHERE mode = ? AND state = ? AND metered_until < ?",
                (now, now, Mode.ON_DEMAND, PhoneState.RUNNING, now),
            )

    async def bill_due(self, now: int) -> int:
        """Bill every on-demand phone whose hour has come; return the cents charged."""
        interval = self.config.bill_interval_s
        total = 0
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT id, next_bill_at FROM phones WHERE mode = ? AND state NOT IN (?, ?)"
                " AND next_bill_at <= ? ORDER BY id",
                (Mode.ON_DEMAND, PhoneState.RELEASED, PhoneState.CREATING, now),
            )
            for row in rows:
                total += await bill_phone(tx, row["id"], now)
                missed = (now - row["next_bill_at"]) // interval + 1
                await tx.execute(
                    "UPDATE phones SET next_bill_at = ? WHERE id = ?",
                    (row["next_bill_at"] + missed * interval, row["id"]),
                )
        return total

    async def enforce(self, now: int) -> Effects:
        """Arrears freeze and release, prepaid expiry and grace release, in one transaction."""
        fx = Effects()
        async with self.store.transaction() as tx:
            accounts = await tx.fetchall("SELECT id FROM accounts WHERE balance_cents < 0")
            for acc in accounts:
                await freeze_if_in_arrears(tx, acc["id"], now, fx)
            for row in await tx.fetchall(
                "SELECT id FROM phones WHERE state = ? AND frozen_at <= ?",
                (PhoneState.FROZEN, now - self.config.arrears_s),
            ):
                await self._release(tx, row["id"], now, REASON_ARREARS, fx)
            for row in await tx.fetchall(
                "SELECT id, state, expires_at FROM phones WHERE mode = ? AND state IN (?, ?)"
                " AND expires_at <= ?",
                (Mode.PREPAID, PhoneState.RUNNING, PhoneState.STOPPED, now),
            ):
                await tx.execute(
                    "UPDATE phones SET state = ?, expired_at = expires_at WHERE id = ?",
                    (PhoneState.EXPIRED, row["id"]),
                )
                if row["state"] == PhoneState.RUNNING:
                    fx.stop.append((row["id"], REASON_EXPIRING))
            for row in await tx.fetchall(
                "SELECT id FROM phones WHERE mode = ? AND state = ? AND expires_at <= ?",
                (Mode.PREPAID, PhoneState.EXPIRED, now - self.config.grace_s),
            ):
                await self._release(tx, row["id"], now, REASON_EXPIRED, fx)
        return fx

    @staticmethod
    async def _release(tx: Tx, phone_id: str, now: int, reason: str, fx: Effects) -> None:
        await bill_phone(tx, phone_id, now)  # a final bill for anything metered and not billed
        await tx.execute(
            "UPDATE phones SET state = ?, released_at = ?, release_reason = ?, user_id = NULL"
            " WHERE id = ?",
            (PhoneState.RELEASED, now, reason, phone_id),
        )
        fx.remove.append((phone_id, reason))

    async def tick(self) -> None:
        """One round of periodic work at the clock's current time."""
        now = self.now()
        async with self.lock:
            await self.meter_all(now)
            await self.bill_due(now)
            fx = await self.enforce(now)
            await fx.apply(self.fleet)
        for chore in self.chores:
            await chore(now)
        self.ticks += 1
        self._ticked.set()
        self._ticked = asyncio.Event()

    async def next_tick(self) -> None:
        """Wait for the end of the next round (tests and operators watching the scheduler)."""
        await self._ticked.wait()

    async def _loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.tick_s)
            try:
                await self.tick()
            except Exception:  # the scheduler must outlive one bad round
                log.exception("billing tick failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="billing")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
