"""Billing rules on the injected clock: hourly bills, remainders, arrears, expiry, refunds, crashes.

These drive the control plane object directly (real SQLite file, real instance pool); the HTTP
layer over the same calls is covered by test_control_api.py.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from cloudphone.edge.control import ControlConfig, ManualClock
from cloudphone.edge.control.errors import ControlError
from cloudphone.edge.control.money import add_months
from cloudphone.edge.control.plane import ControlPlane
from cloudphone.edge.control.sqlite_store import SQLiteStore
from cloudphone.vm.guest import GuestState
from cloudphone.vm.pool import InstancePool

from tests.control_support import LedgerGuest, make_config, make_pool, order_body

HOUR = 3600
DAY = 86400


class Rig:
    """A control plane on a file, with the means to 'kill' it and start a new one on that file."""

    def __init__(self, path: Path, config: ControlConfig) -> None:
        self.path = path
        self.config = config
        self.clock = ManualClock()
        self.planes: list[ControlPlane] = []
        self.removed: list[tuple[str, str]] = []

    async def boot(self) -> ControlPlane:
        pool = make_pool()
        pool.events.on("removed", lambda gid, reason: self.removed.append((gid, reason)))
        plane = ControlPlane(
            pool, SQLiteStore(str(self.path)), self.config, self.clock, scheduler=False
        )
        await plane.start()
        self.planes.append(plane)
        return plane

    @property
    def plane(self) -> ControlPlane:
        return self.planes[-1]

    @property
    def pool(self) -> InstancePool:
        return self.plane.pool

    async def order(self, count: int = 1, mode: str = "on_demand", **over: Any) -> list[str]:
        req = self.plane.orders.parse_order(order_body(count, mode, **over))
        result = await self.plane.orders.place(self.plane.account_id, req)
        return [p["id"] for p in result["phones"]]

    async def hours(self, n: int, step: int = HOUR) -> None:
        for _ in range(n):
            self.clock.advance(step)
            await self.plane.billing.tick()

    async def balance(self) -> int:
        return int((await self.plane.account())["balance_cents"])

    async def entries(self, kind: str | None = None) -> list[dict[str, Any]]:
        rows = await self.plane.ledger_entries(100_000, None)
        return [r for r in rows if kind is None or r["kind"] == kind]

    async def phone(self, phone_id: str) -> dict[str, Any]:
        return await self.plane.phone(phone_id)

    async def close(self) -> None:
        for plane in self.planes:
            await plane.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path / "control.db", make_config())
    await r.boot()
    yield r
    await r.close()


async def test_a_month_of_on_demand_use_is_billed_every_hour(rig: Rig) -> None:
    await rig.plane.recharge(100_000)
    [pid] = await rig.order()
    await rig.hours(30 * 24)
    usage = await rig.entries("usage")
    assert len(usage) == 720
    assert {u["amount_cents"] for u in usage} == {-7}
    assert {u["phone_id"] for u in usage} == {pid}
    phone = await rig.phone(pid)
    assert phone["billing"]["metered_seconds"] == 30 * DAY
    assert phone["billing"]["billed_cents"] == 5040
    assert await rig.balance() == 100_000 - 5040


async def test_sub_cent_remainders_carry_forward(tmp_path: Path) -> None:
    """Bills every 10 min at 7 c/h (7/6 c per bill) with stops: never over, never a cent short."""
    rig = Rig(tmp_path / "c.db", make_config(bill_interval_s=600))
    await rig.boot()
    try:
        await rig.plane.recharge(100_000)
        [pid] = await rig.order()
        ran = 0
        for i in range(60):
            step = 137 + (i * 53) % 400
            rig.clock.advance(step)
            if i % 7 == 3:  # a stop and a later start: stopped time is not metered
                await rig.plane.orders.power(rig.plane.account_id, pid, "stop")
                rig.clock.advance(300)
                await rig.plane.orders.power(rig.plane.account_id, pid, "start")
            ran += step
            bills = len(await rig.entries("usage"))
            await rig.plane.billing.tick()
            billed = 100_000 - await rig.balance()
            exact = Fraction(7 * ran, HOUR)
            assert billed <= exact  # never more than used
            if len(await rig.entries("usage")) > bills:  # a bill just ran: within one cent
                assert exact - 1 < billed
        assert (await rig.phone(pid))["billing"]["metered_seconds"] == ran
        assert len(await rig.entries("usage")) > 20
        before = await rig.balance()
        _, final = await rig.plane.orders.delete(rig.plane.account_id, pid)
        assert await rig.balance() == before - final
        billed = 100_000 - await rig.balance()
        assert Fraction(7 * ran, HOUR) - 1 < billed <= Fraction(7 * ran, HOUR)
    finally:
        await rig.close()


async def test_a_stopped_on_demand_phone_is_not_metered(rig: Rig) -> None:
    await rig.plane.recharge(1000)
    [pid] = await rig.order()
    await rig.hours(1)
    await rig.plane.orders.power(rig.plane.account_id, pid, "stop")
    assert rig.pool.get(pid).state == GuestState.STOPPED
    await rig.hours(5)
    assert (await rig.phone(pid))["billing"]["metered_seconds"] == HOUR
    assert await rig.balance() == 1000 - 7


async def test_arrears_freeze_on_demand_phones_until_a_recharge(rig: Rig) -> None:
    await rig.plane.recharge(10)
    a, b = await rig.order(2)
    await rig.hours(1)  # 14 cents used: balance -4
    assert await rig.balance() == -4
    assert [(await rig.phone(p))["state"] for p in (a, b)] == ["frozen", "frozen"]
    assert all(rig.pool.get(p).state == GuestState.STOPPED for p in (a, b))  # data kept
    with pytest.raises(ControlError) as err:
        await rig.plane.orders.power(rig.plane.account_id, a, "start")
    assert (err.value.status, err.value.code) == (402, "account_in_arrears")
    await rig.hours(3)  # frozen: nothing more is metered or billed
    assert await rig.balance() == -4
    await rig.plane.recharge(3)
    assert (await rig.phone(a))["state"] == "frozen"
    await rig.plane.recharge(1)  # back to zero
    assert [(await rig.phone(p))["state"] for p in (a, b)] == ["running", "running"]
    assert all(rig.pool.get(p).state == GuestState.RUNNING for p in (a, b))
    await rig.hours(1)
    assert (await rig.phone(a))["billing"]["metered_seconds"] == 2 * HOUR


async def test_a_phone_stopped_before_the_freeze_stays_stopped_after_it(rig: Rig) -> None:
    await rig.plane.recharge(5)
    a, b = await rig.order(2)
    await rig.plane.orders.power(rig.plane.account_id, b, "stop")
    await rig.hours(1)
    assert (await rig.phone(b))["state"] == "frozen"
    await rig.plane.recharge(100)
    assert (await rig.phone(a))["state"] == "running"
    assert (await rig.phone(b))["state"] == "stopped"


async def test_arrears_past_the_configured_period_release_the_phones(rig: Rig) -> None:
    await rig.plane.recharge(1)
    [pid] = await rig.order()
    await rig.hours(1)
    assert (await rig.phone(pid))["state"] == "frozen"
    rig.clock.advance(rig.config.arrears_s - 1)
    await rig.plane.billing.tick()
    assert (await rig.phone(pid))["state"] == "frozen"
    await rig.hours(1)
    phone = await rig.phone(pid)
    assert phone["state"] == "released"
    assert pid not in rig.pool
    assert rig.removed == [(pid, "released: the account stayed in arrears")]


async def test_prepaid_expires_then_is_released_after_the_grace_period(rig: Rig) -> None:
    await rig.plane.recharge(3000)
    start = int(rig.clock.now())
    [pid] = await rig.order(mode="prepaid")
    phone = await rig.phone(pid)
    assert phone["billing"]["expires_at"] == add_months(start, 1)
    rig.clock.set(add_months(start, 1) - 1)
    await rig.plane.billing.tick()
    assert (await rig.phone(pid))["state"] == "running"
    rig.clock.advance(1)
    await rig.plane.billing.tick()
    assert (await rig.phone(pid))["state"] == "expired"
    assert rig.pool.get(pid).state == GuestState.STOPPED
    with pytest.raises(ControlError) as err:
        await rig.plane.orders.power(rig.plane.account_id, pid, "start")
    assert err.value.code == "phone_expired"
    rig.clock.advance(rig.config.grace_s)
    await rig.plane.billing.tick()
    assert (await rig.phone(pid))["state"] == "released"
    assert rig.removed == [(pid, "released: the prepaid period ended")]
    assert await rig.balance() == 0  # prepaid is never metered


async def test_renewal_is_charged_up_front_and_revives_an_expired_phone(rig: Rig) -> None:
    await rig.plane.recharge(6000)
    start = int(rig.clock.now())
    [pid] = await rig.order(mode="prepaid")
    rig.clock.set(add_months(start, 1) + DAY)
    await rig.plane.billing.tick()
    assert (await rig.phone(pid))["state"] == "expired"
    row = await rig.plane.orders.renew(rig.plane.account_id, pid, "month", 1)
    assert row["state"] == "running" and row["expires_at"] == add_months(start, 2)
    assert rig.pool.get(pid).state == GuestState.RUNNING
    assert await rig.balance() == 0
    assert [e["kind"] for e in await rig.entries()] == ["renewal", "purchase", "recharge"]
    with pytest.raises(ControlError) as err:  # no money left: refused, nothing changes
        await rig.plane.orders.renew(rig.plane.account_id, pid, "year", 1)
    assert err.value.code == "insufficient_balance"
    assert (await rig.phone(pid))["billing"]["expires_at"] == add_months(start, 2)


async def test_unsubscribe_refunds_unused_time_by_the_second_rounded_down(rig: Rig) -> None:
    await rig.plane.recharge(3000)
    start = int(rig.clock.now())
    [pid] = await rig.order(mode="prepaid")
    rig.clock.advance(10 * DAY + 1)
    row, refund = await rig.plane.orders.unsubscribe(rig.plane.account_id, pid)
    span = add_months(start, 1) - start  # January: 31 days
    assert refund == 3000 * (span - 10 * DAY - 1) // span == 2032
    assert row["state"] == "released"
    assert await rig.balance() == refund
    assert rig.removed == [(pid, "released: the subscription was cancelled")]
    with pytest.raises(ControlError) as err:
        await rig.plane.orders.unsubscribe(rig.plane.account_id, pid)
    assert err.value.code == "phone_released"
    assert await rig.balance() == refund


async def test_actions_for_the_wrong_billing_mode_are_refused_without_change(rig: Rig) -> None:
    await rig.plane.recharge(3000)
    [pre] = await rig.order(mode="prepaid", name="pre")
    [ond] = await rig.order(name="ond")
    acct = rig.plane.account_id
    before = (await rig.balance(), await rig.entries(), await rig.plane.phones())
    for call in (
        rig.plane.orders.delete(acct, pre),
        rig.plane.orders.renew(acct, ond, "month", 1),
        rig.plane.orders.unsubscribe(acct, ond),
    ):
        with pytest.raises(ControlError) as err:
            await call
        assert (err.value.status, err.value.code) == (409, "wrong_billing_mode")
    assert (await rig.balance(), await rig.entries(), await rig.plane.phones()) == before
    assert len(rig.pool) == 2


async def test_deleting_an_on_demand_phone_bills_the_seconds_it_ran(rig: Rig) -> None:
    await rig.plane.recharge(100)
    [pid] = await rig.order()
    await rig.hours(1)
    rig.clock.advance(1000)
    row, final = await rig.plane.orders.delete(rig.plane.account_id, pid)
    assert final == (3600 + 1000) * 7 // 3600 - 7 == 1
    assert row["state"] == "released" and row["metered_seconds"] == 4600
    assert await rig.balance() == 100 - 8
    assert rig.removed == [(pid, "released: the phone was deleted")]
    await rig.hours(2)
    assert await rig.balance() == 92


async def test_a_crash_between_metering_and_billing_loses_no_second_and_bills_none_twice(
    rig: Rig,
) -> None:
    await rig.plane.recharge(1000)
    [pid] = await rig.order()
    rig.clock.advance(1800)
    await rig.plane.billing.meter_all(int(rig.clock.now()))  # the tick dies right after this
    # kill -9: the old plane is abandoned without its shutdown metering; a new one boots.
    plane = await rig.boot()
    assert rig.pool.get(pid).state == GuestState.RUNNING  # rebuilt from the store
    rig.clock.advance(1800)
    await plane.billing.tick()
    phone = await rig.phone(pid)
    assert phone["billing"]["metered_seconds"] == HOUR
    assert phone["billing"]["billed_cents"] == 7
    rig.clock.advance(1800)
    await plane.billing.meter_all(int(rig.clock.now()))
    plane = await rig.boot()  # and again, mid-period
    await plane.billing.bill_due(int(rig.clock.now()))  # not due yet: nothing billed
    rig.clock.advance(1800)
    await plane.billing.tick()
    await plane.billing.tick()  # the same hour twice bills it once
    assert [e["amount_cents"] for e in await rig.entries("usage")] == [-7, -7]
    assert await rig.balance() == 1000 - 14


async def test_a_crash_between_billing_and_the_next_round_bills_nothing_twice(rig: Rig) -> None:
    await rig.plane.recharge(1000)
    [pid] = await rig.order()
    await rig.hours(1)
    plane = await rig.boot()  # killed right after a bill
    await plane.billing.tick()
    await plane.billing.bill_due(int(rig.clock.now()))
    assert [e["amount_cents"] for e in await rig.entries("usage")] == [-7]
    assert (await rig.phone(pid))["billing"]["metered_seconds"] == HOUR


async def test_an_order_cut_short_by_a_crash_is_refunded_at_the_next_start(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path / "c.db", make_config())
    await rig.boot()
    try:
        await rig.plane.recharge(5000)
        hang = asyncio.Event()
        LedgerGuest.hang = hang
        place = asyncio.create_task(rig.order(1, "prepaid"))
        await asyncio.sleep(0.2)
        assert await rig.balance() == 2000  # charged, phones being created
        place.cancel()  # the process dies mid-order (the pool dies with it)
        with pytest.raises(asyncio.CancelledError):
            await place
        plane = await rig.boot()
        assert await rig.balance() == 5000
        phones = await plane.phones()
        assert [p["state"] for p in phones] == ["released"]
        assert len(plane.pool) == 0
    finally:
        LedgerGuest.hang = None
        await rig.close()


async def test_restart_rebuilds_the_pool_as_the_store_records_it(rig: Rig) -> None:
    await rig.plane.recharge(10_000)
    a, b = await rig.order(2)
    [c] = await rig.order(mode="prepaid", name="p")
    await rig.plane.orders.delete(rig.plane.account_id, a)
    await rig.plane.orders.power(rig.plane.account_id, b, "stop")
    await rig.plane.close()
    plane = await rig.boot()
    assert a not in plane.pool
    assert plane.pool.get(b).state == GuestState.STOPPED
    assert plane.pool.get(c).state == GuestState.RUNNING


async def test_the_scheduler_task_bills_on_the_injected_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    config = make_config(tick_s=60)
    plane = ControlPlane(make_pool(), SQLiteStore(str(tmp_path / "s.db")), config, clock)
    await plane.start()
    try:
        await plane.recharge(100)
        req = plane.orders.parse_order(order_body())
        await plane.orders.place(plane.account_id, req)
        for _ in range(HOUR // 60):  # the task wakes 60 times in an hour
            clock.advance(60)
            async with asyncio.timeout(5):
                await plane.billing.next_tick()
        assert (await plane.account())["balance_cents"] == 93
    finally:
        await plane.close()


REPO = Path(__file__).resolve().parent.parent
KILLED_AFTER_METERING = """
import asyncio, os, signal, sys
from cloudphone.edge.control import ManualClock
from cloudphone.edge.control.plane import ControlPlane
from cloudphone.edge.control.sqlite_store import SQLiteStore
from tests.control_support import make_config, make_pool, order_body

async def main(db, t0):
    clock = ManualClock(t0)
    plane = ControlPlane(make_pool(), SQLiteStore(db), make_config(), clock, scheduler=False)
    await plane.start()
    await plane.recharge(1000)
    await plane.orders.place(plane.account_id, plane.orders.parse_order(order_body()))
    clock.advance(1800)
    await plane.billing.meter_all(int(clock.now()))
    os.kill(os.getpid(), signal.SIGKILL)  # between metering and billing, no shutdown at all

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


async def test_a_real_kill_9_between_metering_and_billing(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    t0 = 1_767_225_600.0
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_AFTER_METERING, str(db), str(t0), cwd=REPO
    )
    assert await proc.wait() == -signal.SIGKILL
    rig = Rig(db, make_config())
    rig.clock.set(t0 + 1800)
    plane = await rig.boot()
    try:
        [phone] = await plane.phones()
        assert phone["billing"]["metered_seconds"] == 1800  # the metered half hour survived
        assert phone["billing"]["billed_cents"] == 0
        rig.clock.advance(1800)
        await plane.billing.tick()
        await plane.billing.tick()
        phone = await plane.phone(phone["id"])
        assert phone["billing"]["metered_seconds"] == HOUR
        assert [e["amount_cents"] for e in await rig.entries("usage")] == [-7]
        assert await rig.balance() == 1000 - 7
    finally:
        await rig.close()


async def test_a_phone_released_for_arrears_still_pays_its_last_seconds(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "a.db", make_config(arrears_s=10))
    await rig.boot()
    try:
        a, b = await rig.order(2)
        rig.clock.advance(1800)
        await rig.plane.orders.delete(rig.plane.account_id, a)  # final bill: balance -3
        assert (await rig.phone(b))["state"] == "frozen"  # its 1800 s are metered, not billed
        rig.clock.advance(11)  # released for arrears before its hourly bill came
        await rig.plane.billing.tick()
        phone = await rig.phone(b)
        assert phone["state"] == "released"
        assert phone["billing"]["metered_seconds"] == 1800
        assert phone["billing"]["billed_cents"] == 1800 * 7 // 3600
        assert await rig.balance() == -2 * (1800 * 7 // 3600)
    finally:
        await rig.close()
