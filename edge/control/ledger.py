"""The account balance and its ledger: every change of balance is a row, in the same transaction.

`debit_if_covered` is a single conditional UPDATE, so two orders racing for the same balance can
never both pass, whatever the store's isolation level.
"""

from __future__ import annotations

from enum import StrEnum

from cloudphone.edge.control.errors import ControlError, not_found
from cloudphone.edge.control.store import Row, Tx

DEFAULT_ACCOUNT = 1


class EntryKind(StrEnum):
    """Why the balance moved."""

    RECHARGE = "recharge"
    PURCHASE = "purchase"  # prepaid order, charged up front
    RENEWAL = "renewal"
    REFUND = "refund"  # unsubscribe pro rata, or an order that could not be fulfilled
    USAGE = "usage"  # on-demand metered seconds


async def ensure_account(tx: Tx, account_id: int, name: str, now: int) -> None:
    await tx.execute(
        "INSERT INTO accounts (id, name, balance_cents, created_at) VALUES (?, ?, 0, ?)"
        " ON CONFLICT (id) DO NOTHING",
        (account_id, name, now),
    )


async def account(tx: Tx, account_id: int) -> Row:
    row = await tx.fetchone("SELECT * FROM accounts WHERE id = ?", (account_id,))
    if row is None:
        raise not_found("account", account_id)
    return row


async def balance(tx: Tx, account_id: int) -> int:
    return int((await account(tx, account_id))["balance_cents"])


async def _record(
    tx: Tx,
    account_id: int,
    kind: EntryKind,
    amount: int,
    now: int,
    *,
    order_id: int | None,
    phone_id: str | None,
    memo: str,
) -> int:
    after = await balance(tx, account_id)
    await tx.insert(
        "INSERT INTO ledger (account_id, at, kind, amount_cents, balance_after_cents, order_id,"
        " phone_id, memo) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (account_id, now, str(kind), amount, after, order_id, phone_id, memo),
    )
    return after


async def credit(
    tx: Tx,
    account_id: int,
    kind: EntryKind,
    cents: int,
    now: int,
    *,
    order_id: int | None = None,
    phone_id: str | None = None,
    memo: str = "",
) -> int:
    """Add `cents` (>= 0) to the balance; return the new balance."""
    assert cents >= 0
    await tx.execute(
        "UPDATE accounts SET balance_cents = balance_cents + ? WHERE id = ?", (cents, account_id)
    )
    return await _record(
        tx, account_id, kind, cents, now, order_id=order_id, phone_id=phone_id, memo=memo
    )


async def debit_if_covered(
    tx: Tx,
    account_id: int,
    kind: EntryKind,
    cents: int,
    now: int,
    *,
    order_id: int | None = None,
    phone_id: str | None = None,
    memo: str = "",
) -> int:
    """Take `cents` only if the balance covers it; otherwise refuse with 402 and change nothing."""
    assert cents >= 0
    changed = await tx.execute(
        "UPDATE accounts SET balance_cents = balance_cents - ? WHERE id = ? AND balance_cents >= ?",
        (cents, account_id, cents),
    )
    if changed != 1:
        have = await balance(tx, account_id)
        raise ControlError(
            402,
            "insufficient_balance",
            f"this needs {cents} cents and the balance is {have} cents",
        )
    return await _record(
        tx, account_id, kind, -cents, now, order_id=order_id, phone_id=phone_id, memo=memo
    )


async def debit(
    tx: Tx,
    account_id: int,
    kind: EntryKind,
    cents: int,
    now: int,
    *,
    phone_id: str | None = None,
    memo: str = "",
) -> int:
    """Take `cents` even into arrears (usage already consumed); return the new balance."""
    assert cents >= 0
    await tx.execute(
        "UPDATE accounts SET balance_cents = balance_cents - ? WHERE id = ?", (cents, account_id)
    )
    return await _record(
        tx, account_id, kind, -cents, now, order_id=None, phone_id=phone_id, memo=memo
    )
