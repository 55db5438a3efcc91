"""The store interface: transactions of plain SQL, so business rules are written once.

The rules above it (ledger, orders, billing) speak portable SQL with `?` placeholders inside
`async with store.transaction() as tx`. A transaction is all-or-nothing and serialisable with
respect to the rows it changes; SQLite gets that from one writer, PostgreSQL would from
`BEGIN ISOLATION LEVEL SERIALIZABLE` or the conditional updates the rules already use. No ORM:
the SQL that moves money is the SQL you read.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = dict[str, Any]
Params = Sequence[Any]


class Tx(Protocol):
    """One open transaction."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run an INSERT into a table with an integer key; return the new key."""
        ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...


class Store(Protocol):
    """A durable home for control-plane state."""

    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations)."""
        ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """Begin a write transaction; commit on normal exit, roll back on exception."""
        ...

    @property
    def schema_version(self) -> int: ...
