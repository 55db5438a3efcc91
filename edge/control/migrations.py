"""Schema migrations, in order. Append only: a shipped migration is never edited.

Each migration is a list of statements applied in one transaction together with the bump of
`schema_version`, so a crash mid-upgrade leaves the previous version intact.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 1: accounts, the ledger, orders, phones, settings.
    [
        """CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            balance_cents INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL
        )""",
        """CREATE TABLE ledger (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            at INTEGER NOT NULL,
            kind TEXT NOT NULL,
            amount_cents INTEGER NOT NULL,
            balance_after_cents INTEGER NOT NULL,
            order_id INTEGER,
            phone_id TEXT,
            memo TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX ledger_account ON ledger(account_id, id)",
        """CREATE TABLE orders (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            created_at INTEGER NOT NULL,
            region TEXT NOT NULL,
            zone TEXT NOT NULL,
            flavor TEXT NOT NULL,
            name TEXT NOT NULL,
            count INTEGER NOT NULL,
            mode TEXT NOT NULL,
            period TEXT,
            duration INTEGER,
            charged_cents INTEGER NOT NULL,
            state TEXT NOT NULL
        )""",
        """CREATE TABLE phones (
            id TEXT PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            order_id INTEGER NOT NULL REFERENCES orders(id),
            name TEXT NOT NULL,
            region TEXT NOT NULL,
            zone TEXT NOT NULL,
            flavor TEXT NOT NULL,
            mode TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            period_start INTEGER,
            expires_at INTEGER,
            prepaid_paid_cents INTEGER NOT NULL DEFAULT 0,
            price_cents_per_hour INTEGER NOT NULL DEFAULT 0,
            metered_until INTEGER,
            metered_seconds INTEGER NOT NULL DEFAULT 0,
            billed_cents INTEGER NOT NULL DEFAULT 0,
            next_bill_at INTEGER,
            frozen_at INTEGER,
            frozen_from TEXT,
            expired_at INTEGER,
            released_at INTEGER,
            release_reason TEXT
        )""",
        "CREATE INDEX phones_state ON phones(state, mode)",
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
]
