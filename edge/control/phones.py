"""Phone records: their states, how they are read from the store and shown to clients."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from cloudphone.edge.control.errors import ControlError, not_found
from cloudphone.edge.control.store import Row, Tx


class Mode(StrEnum):
    PREPAID = "prepaid"
    ON_DEMAND = "on_demand"


class PhoneState(StrEnum):
    """What the control plane has decided about a phone (the pool is made to agree)."""

    CREATING = "creating"  # paid for, guests being created; never metered
    RUNNING = "running"
    STOPPED = "stopped"  # stopped by its owner; on-demand is not metered while stopped
    FROZEN = "frozen"  # on-demand, account in arrears: stopped, data kept
    EXPIRED = "expired"  # prepaid, past expiry: stopped, within the grace period
    RELEASED = "released"  # gone: deleted, unsubscribed, or released after grace/arrears


LIVE_STATES = (PhoneState.RUNNING, PhoneState.STOPPED, PhoneState.FROZEN, PhoneState.EXPIRED)


async def get(tx: Tx, phone_id: str, account_id: int | None = None) -> Row:
    row = await tx.fetchone("SELECT * FROM phones WHERE id = ?", (phone_id,))
    if row is None or (account_id is not None and row["account_id"] != account_id):
        raise not_found("phone", phone_id)
    return row


def require_live(row: Row) -> None:
    """Refuse actions on phones that are gone or not yet built."""
    if row["state"] == PhoneState.RELEASED:
        raise ControlError(409, "phone_released", f"phone {row['id']} was released")
    if row["state"] == PhoneState.CREATING:
        raise ControlError(409, "phone_not_ready", f"phone {row['id']} is still being created")


def as_dict(row: Row) -> dict[str, Any]:
    billing: dict[str, Any] = {"mode": row["mode"]}
    if row["mode"] == Mode.PREPAID:
        billing.update(
            period_start=row["period_start"],
            expires_at=row["expires_at"],
            paid_cents=row["prepaid_paid_cents"],
        )
    else:
        billing.update(
            price_cents_per_hour=row["price_cents_per_hour"],
            metered_seconds=row["metered_seconds"],
            billed_cents=row["billed_cents"],
            next_bill_at=row["next_bill_at"],
        )
    return {
        "id": row["id"],
        "name": row["name"],
        "order_id": row["order_id"],
        "region": row["region"],
        "zone": row["zone"],
        "flavor": row["flavor"],
        "state": row["state"],
        "billing": billing,
        "created_at": row["created_at"],
        "frozen_at": row["frozen_at"],
        "expired_at": row["expired_at"],
        "released_at": row["released_at"],
        "release_reason": row["release_reason"],
        "user_id": row.get("user_id"),
    }


def user_view(row: Row) -> dict[str, Any]:
    """What a phone's user sees: no prices, no billing internals."""
    return {
        "id": row["id"],
        "name": row["name"],
        "state": row["state"],
        "region": row["region"],
        "zone": row["zone"],
        "flavor": row["flavor"],
        "usable": row["state"] == PhoneState.RUNNING,
    }
