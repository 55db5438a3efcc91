"""Orders and the phone lifecycle: batch purchase, renew, unsubscribe, delete, start/stop.

Every method validates first, then changes the store in one transaction (the money with it),
then makes the pool agree. Refusals raise `ControlError` before anything is written.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from cloudphone.edge.control import ledger
from cloudphone.edge.control import phones as ph
from cloudphone.edge.control.billing import Effects, bill_phone, freeze_if_in_arrears, meter_phone
from cloudphone.edge.control.clock import Clock
from cloudphone.edge.control.config import ControlConfig, Flavor
from cloudphone.edge.control.errors import ControlError, bad_request, conflict
from cloudphone.edge.control.fleet import Fleet
from cloudphone.edge.control.ledger import EntryKind
from cloudphone.edge.control.money import add_months, months_for, prepaid_price, pro_rata_refund
from cloudphone.edge.control.phones import Mode, PhoneState
from cloudphone.edge.control.store import Row, Store

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
PERIODS = ("month", "year")
REASON_DELETED = "released: the phone was deleted"
REASON_UNSUBSCRIBED = "released: the subscription was cancelled"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A validated purchase."""

    region: str
    zone: str
    flavor: Flavor
    name: str
    count: int
    mode: Mode
    period: str | None = None
    duration: int | None = None


class Orders:
    """Purchases and per-phone actions for one account."""

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
        self.lock = lock

    def now(self) -> int:
        return int(self.clock.now())

    # -- validation ---------------------------------------------------------------------------

    def check_period(self, period: Any, duration: Any) -> tuple[str, int]:
        if period not in PERIODS:
            raise bad_request("invalid_period", f"period must be one of {list(PERIODS)}")
        limit = self.config.max_years if period == "year" else self.config.max_months
        if type(duration) is not int or not 1 <= duration <= limit:
            raise bad_request("invalid_duration", f"duration must be an integer 1..{limit}")
        return period, duration

    def parse_order(self, body: dict[str, Any]) -> OrderRequest:
        region = self.config.region(body.get("region"))
        if region is None:
            raise bad_request("unknown_region", f"unknown region {body.get('region')!r}")
        zone = body.get("zone")
        if zone not in region.zones:
            raise bad_request("unknown_zone", f"region {region.name} has no zone {zone!r}")
        assert isinstance(zone, str)
        if not self.config.serves(zone):
            raise ControlError(409, "zone_not_served", f"this edge node does not serve {zone}")
        flavor = self.config.flavor(body.get("flavor"))
        if flavor is None:
            raise bad_request("unknown_flavor", f"unknown flavor {body.get('flavor')!r}")
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise bad_request("invalid_name", "name: 1-32 letters, digits, '-' or '_'")
        count = body.get("count")
        if type(count) is not int or not 1 <= count <= self.config.max_count:
            limit = self.config.max_count
            raise bad_request("invalid_count", f"count must be an integer 1..{limit}")
        billing = body.get("billing")
        if not isinstance(billing, dict):
            raise bad_request("invalid_billing", "billing must be an object with a mode")
        mode = billing.get("mode")
        if mode == Mode.ON_DEMAND:
            if set(billing) - {"mode"}:
                raise bad_request("invalid_billing", "on_demand takes no period or duration")
            return OrderRequest(region.name, zone, flavor, name, count, Mode.ON_DEMAND)
        if mode == Mode.PREPAID:
            period, duration = self.check_period(billing.get("period"), billing.get("duration"))
            return OrderRequest(
                region.name, zone, flavor, name, count, Mode.PREPAID, period, duration
            )
        raise bad_request("invalid_billing", "billing.mode must be 'prepaid' or 'on_demand'")

    # -- purchase -----------------------------------------------------------------------------

    async def place(self, account_id: int, req: OrderRequest) -> dict[str, Any]:
        """Charge (prepaid), create `count` phones all or none, and return the order."""
        now = self.now()
        unit = prepaid_price(req.flavor, req.period or "month", req.duration or 0)
        total = unit * req.count if req.mode == Mode.PREPAID else 0
        expires = add_months(now, months_for(req.period or "month", req.duration or 0))
        ids = [f"ph-{secrets.token_hex(6)}" for _ in range(req.count)]
        async with self.store.transaction() as tx:
            order_id = await tx.insert(
                "INSERT INTO orders (account_id, created_at, region, zone, flavor, name, count,"
                " mode, period, duration, charged_cents, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'creating')",
                (
                    account_id,
                    now,
                    req.region,
                    req.zone,
                    req.flavor.name,
                    req.name,
                    req.count,
                    req.mode,
                    req.period,
                    req.duration,
                    total,
                ),
            )
            if total:
                await ledger.debit_if_covered(
                    tx,
                    account_id,
                    EntryKind.PURCHASE,
                    total,
                    now,
                    order_id=order_id,
                    memo=f"{req.count} x {req.flavor.name}, {req.duration} {req.period}(s)",
                )
            for i, phone_id in enumerate(ids, start=1):
                await tx.execute(
                    "INSERT INTO phones (id, account_id, order_id, name, region, zone, flavor,"
                    " mode, state, created_at, period_start, expires_at, prepaid_paid_cents,"
                    " price_cents_per_hour) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        phone_id,
                        account_id,
                        order_id,
                        f"{req.name}-{i:04d}",
                        req.region,
                        req.zone,
                        req.flavor.name,
                        req.mode,
                        PhoneState.CREATING,
                        now,
                        now if req.mode == Mode.PREPAID else None,
                        expires if req.mode == Mode.PREPAID else None,
                        unit if req.mode == Mode.PREPAID else 0,
                        req.flavor.on_demand_cents_per_hour if req.mode == Mode.ON_DEMAND else 0,
                    ),
                )
        try:
            await self.fleet.create_all(ids, req.flavor)
        except BaseException as exc:
            await self.fail_order(order_id, f"order could not be fulfilled: {exc!r}")
            if isinstance(exc, Exception):
                raise ControlError(
                    503, "provisioning_failed", "the phones could not be started; refunded"
                ) from exc
            raise
        started = self.now()
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE phones SET state = ?, metered_until = ?, next_bill_at = ?"
                " WHERE order_id = ? AND state = ?",
                (
                    PhoneState.RUNNING,
                    started,
                    started + self.config.bill_interval_s,
                    order_id,
                    PhoneState.CREATING,
                ),
            )
            await tx.execute("UPDATE orders SET state = 'completed' WHERE id = ?", (order_id,))
            rows = await tx.fetchall(
                "SELECT * FROM phones WHERE order_id = ? ORDER BY name", (order_id,)
            )
        return {
            "order_id": order_id,
            "phones": [ph.as_dict(r) for r in rows],
            "charged_cents": total,
        }

    async def fail_order(self, order_id: int, reason: str) -> None:
        """Undo an order whose phones could not all be built: release them and refund."""
        now = self.now()
        async with self.store.transaction() as tx:
            order = await tx.fetchone("SELECT * FROM orders WHERE id = ?", (order_id,))
            if order is None or order["state"] != "creating":
                return
            await tx.execute(
                "UPDATE phones SET state = ?, released_at = ?, release_reason = ?, user_id = NULL"
                " WHERE order_id = ?",
                (PhoneState.RELEASED, now, reason, order_id),
            )
            await tx.execute("UPDATE orders SET state = 'failed' WHERE id = ?", (order_id,))
            if order["charged_cents"]:
                await ledger.credit(
                    tx,
                    order["account_id"],
                    EntryKind.REFUND,
                    order["charged_cents"],
                    now,
                    order_id=order_id,
                    memo="order could not be fulfilled",
                )
        log.warning("order %s failed: %s", order_id, reason)

    # -- per-phone actions --------------------------------------------------------------------

    async def renew(self, account_id: int, phone_id: str, period: Any, duration: Any) -> Row:
        period, duration = self.check_period(period, duration)
        now = self.now()
        fx = Effects()
        async with self.lock:
            async with self.store.transaction() as tx:
                row = await ph.get(tx, phone_id, account_id)
                ph.require_live(row)
                if row["mode"] != Mode.PREPAID:
                    raise conflict("wrong_billing_mode", "on-demand phones cannot be renewed")
                flavor = self.config.flavor(row["flavor"])
                if flavor is None:
                    raise conflict("flavor_retired", f"flavor {row['flavor']} is no longer sold")
                price = prepaid_price(flavor, period, duration)
                await ledger.debit_if_covered(
                    tx,
                    account_id,
                    EntryKind.RENEWAL,
                    price,
                    now,
                    phone_id=phone_id,
                    memo=f"{duration} {period}(s)",
                )
                expires = add_months(row["expires_at"], months_for(period, duration))
                state = row["state"]
                if state == PhoneState.EXPIRED and expires > now:
                    state = PhoneState.RUNNING
                    fx.start.append((phone_id, row["flavor"]))
                await tx.execute(
                    "UPDATE phones SET expires_at = ?,"
                    " prepaid_paid_cents = prepaid_paid_cents + ?, state = ?,"
                    " expired_at = CASE WHEN ? = 'expired' THEN expired_at END WHERE id = ?",
                    (expires, price, state, state, phone_id),
                )
                row = await ph.get(tx, phone_id)
            await fx.apply(self.fleet)
        return row

    async def unsubscribe(self, account_id: int, phone_id: str) -> tuple[Row, int]:
        """Release a prepaid phone and refund its unused time by the second, rounded down."""
        now = self.now()
        async with self.lock:
            async with self.store.transaction() as tx:
                row = await ph.get(tx, phone_id, account_id)
                ph.require_live(row)
                if row["mode"] != Mode.PREPAID:
                    raise conflict(
                        "wrong_billing_mode", "on-demand phones are deleted, not unsubscribed"
                    )
                refund = pro_rata_refund(
                    row["prepaid_paid_cents"], row["period_start"], row["expires_at"], now
                )
                await tx.execute(
                    "UPDATE phones SET state = ?, released_at = ?, release_reason = ?,"
                    " user_id = NULL WHERE id = ?",
                    (PhoneState.RELEASED, now, REASON_UNSUBSCRIBED, phone_id),
                )
                if refund:
                    await ledger.credit(
                        tx,
                        account_id,
                        EntryKind.REFUND,
                        refund,
                        now,
                        phone_id=phone_id,
                        memo="unused time, pro rata",
                    )
                row = await ph.get(tx, phone_id)
            await self.fleet.remove(phone_id, REASON_UNSUBSCRIBED)
        return row, refund

    async def delete(self, account_id: int, phone_id: str) -> tuple[Row, int]:
        """Release an on-demand phone after a final bill for the seconds it ran."""
        now = self.now()
        fx = Effects()
        async with self.lock:
            async with self.store.transaction() as tx:
                row = await ph.get(tx, phone_id, account_id)
                ph.require_live(row)
                if row["mode"] != Mode.ON_DEMAND:
                    raise conflict(
                        "wrong_billing_mode",
                        "prepaid phones cannot be deleted; unsubscribe instead",
                    )
                await meter_phone(tx, row, now)
                await tx.execute(
                    "UPDATE phones SET state = ?, released_at = ?, release_reason = ?,"
                    " user_id = NULL WHERE id = ?",
                    (PhoneState.RELEASED, now, REASON_DELETED, phone_id),
                )
                final = await bill_phone(tx, phone_id, now)
                await freeze_if_in_arrears(tx, account_id, now, fx)
                row = await ph.get(tx, phone_id)
            await self.fleet.remove(phone_id, REASON_DELETED)
            await fx.apply(self.fleet)
        return row, final

    async def power(self, account_id: int, phone_id: str, action: str) -> Row:
        """start, stop or restart; on-demand metering follows the running state."""
        now = self.now()
        async with self.lock:
            async with self.store.transaction() as tx:
                row = await ph.get(tx, phone_id, account_id)
                ph.require_live(row)
                if row["state"] == PhoneState.FROZEN:
                    raise ControlError(
                        402, "account_in_arrears", "recharge the account to use this phone again"
                    )
                if row["state"] == PhoneState.EXPIRED:
                    raise conflict("phone_expired", "renew the phone to use it again")
                await meter_phone(tx, row, now)
                state = PhoneState.STOPPED if action == "stop" else PhoneState.RUNNING
                await tx.execute(
                    "UPDATE phones SET state = ?, metered_until = CASE WHEN mode = ? THEN ?"
                    " ELSE metered_until END WHERE id = ?",
                    (state, Mode.ON_DEMAND, now, phone_id),
                )
                row = await ph.get(tx, phone_id)
            flavor = self.config.flavor(row["flavor"])
            if action == "stop":
                await self.fleet.stop(phone_id, "stopped by the administrator")
            elif action == "start":
                await self.fleet.start(phone_id, flavor)
            else:
                try:
                    await self.fleet.restart(phone_id)
                except Exception:
                    log.exception("restart of %s failed; starting afresh", phone_id)
                    await self.fleet.start(phone_id, flavor)
        return row
