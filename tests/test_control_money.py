"""Money arithmetic: calendar months, pro-rata refunds, per-second usage with carried remainders."""

from __future__ import annotations

from datetime import UTC, datetime

from cloudphone.edge.control.money import add_months, pro_rata_refund, usage_cents
from hypothesis import given
from hypothesis import strategies as st


def ts(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp())


def test_months_are_calendar_months_clamped_to_the_last_day() -> None:
    assert add_months(ts(2026, 1, 15, 8), 1) == ts(2026, 2, 15, 8)
    assert add_months(ts(2026, 1, 31), 1) == ts(2026, 2, 28)
    assert add_months(ts(2028, 1, 31), 1) == ts(2028, 2, 29)
    assert add_months(ts(2026, 11, 30), 3) == ts(2027, 2, 28)
    assert add_months(ts(2026, 3, 1), 12) == ts(2027, 3, 1)


def test_pro_rata_refund_is_by_the_second_and_rounded_down() -> None:
    assert pro_rata_refund(3000, 0, 100, 0) == 3000
    assert pro_rata_refund(3000, 0, 100, 1) == 2970
    assert pro_rata_refund(1000, 0, 3, 1) == 666  # 666.67 rounds down
    assert pro_rata_refund(3000, 0, 100, 100) == 0
    assert pro_rata_refund(3000, 0, 100, 500) == 0  # past expiry: nothing left
    assert pro_rata_refund(3000, 50, 100, 0) == 3000  # never more than was paid


@given(
    st.integers(min_value=0, max_value=10_000),
    st.lists(st.integers(min_value=0, max_value=10 * 86400), max_size=50),
)
def test_billing_cumulative_usage_never_overcharges_nor_falls_a_cent_short(
    cents_per_hour: int, chunks: list[int]
) -> None:
    seconds = 0
    for chunk in chunks:
        seconds += chunk
        billed = usage_cents(seconds, cents_per_hour)  # a bill charges this minus billed so far
        exact = seconds * cents_per_hour / 3600
        assert exact - 1 < billed <= exact
    per_bill_floor = sum(chunk * cents_per_hour // 3600 for chunk in chunks)
    assert usage_cents(seconds, cents_per_hour) >= per_bill_floor  # remainders are not lost
