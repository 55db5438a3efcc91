"""SQLite implementation of the store: one file, WAL, one connection on its own thread.

sqlite3 blocks, so every call runs on a single dedicated worker thread; an asyncio lock hands
the connection to one transaction at a time, and `BEGIN IMMEDIATE` takes SQLite's write lock up
front so another process sharing the file cannot interleave either.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from cloudphone.edge.control.migrations import MIGRATIONS
from cloudphone.edge.control.store import Params, Row, Tx

T = TypeVar("T")


def _rollback_if_open(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class StoreError(RuntimeError):
    """The store is closed or its file cannot be used."""


class _SQLiteTx:
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._store._run(lambda c: c.execute(sql, tuple(params)).rowcount)

    async def insert(self, sql: str, params: Params = ()) -> int:
        def run(c: sqlite3.Connection) -> int:
            rowid = c.execute(sql, tuple(params)).lastrowid
            assert rowid is not None
            return rowid

        return await self._store._run(run)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        def run(c: sqlite3.Connection) -> Row | None:
            row = c.execute(sql, tuple(params)).fetchone()
            return dict(row) if row is not None else None

        return await self._store._run(run)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._store._run(
            lambda c: [dict(r) for r in c.execute(sql, tuple(params)).fetchall()]
        )


class SQLiteStore:
    """The default store. `path` may be ":memory:" for throwaway use."""

    def __init__(self, path: str, migrations: list[list[str]] | None = None) -> None:
        self.path = path
        self._migrations = MIGRATIONS if migrations is None else migrations
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._version = 0

    @property
    def schema_version(self) -> int:
        return self._version

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn, executor = self._conn, self._executor
        if conn is None or executor is None:
            raise StoreError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(executor, fn, conn)

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # money: a commit survives power loss
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            return conn

        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, connect)
        await self._migrate()

    async def _migrate(self) -> None:
        async with self.transaction() as tx:
            await tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await tx.fetchone("SELECT MAX(version) AS v FROM schema_version")
        current = int(row["v"]) if row and row["v"] is not None else 0
        for version, statements in enumerate(self._migrations, start=1):
            if version <= current:
                continue
            async with self.transaction() as tx:
                for statement in statements:
                    await tx.execute(statement)
                await tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            current = version
        self._version = current

    async def close(self) -> None:
        conn, executor = self._conn, self._executor
        self._conn = self._executor = None
        if conn is not None and executor is not None:
            async with self._lock:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            committed = False
            try:
                await self._run(lambda c: c.execute("BEGIN IMMEDIATE"))
                yield _SQLiteTx(self)
                await self._run(lambda c: c.execute("COMMIT"))
                committed = True
            finally:
                if not committed:
                    # Also when cancelled mid-BEGIN or mid-COMMIT: the worker thread still runs
                    # what was queued, in order, so this rollback always follows it.
                    await self._run(_rollback_if_open)

    async def pragma(self, name: str) -> Any:
        """Read a pragma (tests check WAL is on)."""
        async with self._lock:
            return await self._run(lambda c: c.execute(f"PRAGMA {name}").fetchone()[0])
