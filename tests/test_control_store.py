"""The SQLite store: WAL, migrations applied once and atomically, transactions all-or-nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from cloudphone.edge.control.migrations import MIGRATIONS
from cloudphone.edge.control.sqlite_store import SQLiteStore, StoreError


async def test_a_fresh_file_gets_every_migration_and_wal(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "a.db"))
    await store.open()
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert await store.pragma("journal_mode") == "wal"
        assert await store.pragma("foreign_keys") == 1
    finally:
        await store.close()
    again = SQLiteStore(str(tmp_path / "a.db"))
    await again.open()  # nothing re-applied: CREATE TABLE would fail if it were
    try:
        async with again.transaction() as tx:
            rows = await tx.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
    finally:
        await again.close()


async def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    bad = [*MIGRATIONS, ["CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"]]
    store = SQLiteStore(path, bad)
    with pytest.raises(sqlite3.OperationalError):
        await store.open()
    await store.close()
    good = SQLiteStore(path, [*MIGRATIONS, ["CREATE TABLE extra (x INTEGER)"]])
    await good.open()  # the half-applied one left nothing behind, so this one applies cleanly
    try:
        assert good.schema_version == len(MIGRATIONS) + 1
    finally:
        await good.close()


async def test_a_transaction_that_raises_leaves_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "t.db"))
    await store.open()
    try:
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO settings (key, value) VALUES ('a', '1')")
                raise RuntimeError("boom")
        async with store.transaction() as tx:
            assert await tx.fetchone("SELECT * FROM settings WHERE key = 'a'") is None
    finally:
        await store.close()


async def test_concurrent_read_modify_write_transactions_do_not_interleave(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "c.db"))
    await store.open()
    try:
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO settings (key, value) VALUES ('n', '0')")

        async def bump() -> None:
            async with store.transaction() as tx:
                row = await tx.fetchone("SELECT value FROM settings WHERE key = 'n'")
                assert row is not None
                await asyncio.sleep(0)  # give every other task the chance to interleave
                await tx.execute(
                    "UPDATE settings SET value = ? WHERE key = 'n'", (str(int(row["value"]) + 1),)
                )

        await asyncio.gather(*(bump() for _ in range(40)))
        async with store.transaction() as tx:
            assert await tx.fetchone("SELECT value FROM settings WHERE key = 'n'") == {
                "value": "40"
            }
    finally:
        await store.close()


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "x.db"))
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        async with store.transaction():
            pass


async def test_a_transaction_cancelled_at_any_point_leaves_the_store_usable(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "k.db"))
    await store.open()
    try:
        for delay_steps in range(6):  # cancel while BEGIN, the statement or COMMIT is in flight

            async def write(n: int = delay_steps) -> None:
                async with store.transaction() as tx:
                    await tx.execute(
                        "INSERT INTO settings (key, value) VALUES (?, 'x')", (f"k{n}",)
                    )

            task = asyncio.create_task(write())
            for _ in range(delay_steps):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            async with store.transaction() as tx:  # raises if a transaction was left open
                await tx.execute(
                    "INSERT INTO settings (key, value) VALUES (?, 'y')", (f"after{delay_steps}",)
                )
    finally:
        await store.close()
