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
    # 2: organisations, users, assignment, logins (challenges, sessions, trusted browsers),
    # the notification outbox, and the failure log that rate limits read.
    [
        """CREATE TABLE orgs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            name TEXT NOT NULL,
            parent_id INTEGER REFERENCES orgs(id),
            created_at INTEGER NOT NULL
        )""",
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            org_id INTEGER NOT NULL REFERENCES orgs(id),
            login TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            mobile TEXT NOT NULL,
            role TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL
        )""",
        "ALTER TABLE phones ADD COLUMN user_id INTEGER REFERENCES users(id)",
        "CREATE INDEX phones_user ON phones(user_id)",
        """CREATE TABLE challenges (
            id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            code_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            tries INTEGER NOT NULL DEFAULT 0,
            used_at INTEGER
        )""",
        """CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            csrf TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            revoked_at INTEGER
        )""",
        "CREATE INDEX sessions_user ON sessions(user_id)",
        """CREATE TABLE devices (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            token_hash TEXT NOT NULL UNIQUE,
            user_id INTEGER NOT NULL REFERENCES users(id),
            label TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            revoked_at INTEGER
        )""",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at INTEGER NOT NULL,
            channel TEXT NOT NULL,
            recipient TEXT NOT NULL,
            kind TEXT NOT NULL,
            body TEXT NOT NULL,
            payload TEXT NOT NULL,
            sent_at INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        )""",
        """CREATE TABLE auth_failures (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            login TEXT NOT NULL,
            ip TEXT NOT NULL,
            kind TEXT NOT NULL
        )""",
        "CREATE INDEX auth_failures_login ON auth_failures(login, at)",
        "CREATE INDEX auth_failures_ip ON auth_failures(ip, at)",
    ],
    # 3: sharing kept beyond a restart: invite links (the token's hash only), security
    # policies (the fields an organisation or a phone sets, as JSON; `org` is "default" or an
    # organisation's id), and the audit log (`org_id`: the phone owner's organisation when the
    # entry was written, which scopes who may read it). Times are seconds since 1970 with
    # fractions (DOUBLE PRECISION: REAL would be four bytes in PostgreSQL).
    [
        """CREATE TABLE invites (
            id TEXT PRIMARY KEY,
            token_sha256 TEXT NOT NULL UNIQUE,
            phone_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            label TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            max_uses INTEGER NOT NULL,
            uses INTEGER NOT NULL DEFAULT 0,
            revoked_at DOUBLE PRECISION
        )""",
        "CREATE INDEX invites_phone ON invites(phone_id)",
        """CREATE TABLE org_policies (
            org TEXT PRIMARY KEY,
            fields TEXT NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
        """CREATE TABLE phone_policies (
            phone_id TEXT PRIMARY KEY,
            fields TEXT NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at DOUBLE PRECISION NOT NULL,
            phone_id TEXT NOT NULL,
            org_id INTEGER,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            details TEXT NOT NULL
        )""",
        "CREATE INDEX audit_phone ON audit(phone_id, id)",
        "CREATE INDEX audit_org ON audit(org_id, id)",
    ],
    # 4: the audit log is kept for `audit_retention_days`; pruning finds old entries by time.
    [
        "CREATE INDEX audit_at ON audit(at)",
    ],
]
