"""Money arithmetic in integer cents: prepaid prices, calendar periods, pro-rata, metered usage.

Nothing here rounds up: a customer is never charged a fraction of a cent they did not use.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from cloudphone.edge.control.config import Flavor

SECONDS_PER_HOUR = 3600


def months_for(period: str, duration: int) -> int:
    return duration * (12 if period == "year" else 1)


def prepaid_price(flavor: Flavor, period: str, duration: int) -> int:
    """Price of one phone for `duration` periods, in cents."""
    unit = flavor.year_cents if period == "year" else flavor.month_cents
    return unit * duration


def add_months(ts: int, months: int) -> int:
    """The same wall time `months` calendar months later (UTC), clamped to the month's last day."""
    t = datetime.fromtimestamp(ts, UTC)
    index = t.month - 1 + months
    year, month = t.year + index // 12, index % 12 + 1
    day = min(t.day, calendar.monthrange(year, month)[1])
    return int(t.replace(year=year, month=month, day=day).timestamp())


def pro_rata_refund(paid_cents: int, span_start: int, expires_at: int, now: int) -> int:
    """Unused share of what was paid for [span_start, expires_at), by the second, rounded down."""
    total = expires_at - span_start
    unused = max(0, min(total, expires_at - now))
    if total <= 0:
        return 0
    return paid_cents * unused // total


def usage_cents(seconds: int, cents_per_hour: int) -> int:
    """What `seconds` of use cost in whole cents, rounded down.

    Billing always charges `usage_cents(total seconds) - already billed`, so sub-cent remainders
    carry forward and the billed total never exceeds price x seconds nor falls a cent short.
    """
    return seconds * cents_per_hour // SECONDS_PER_HOUR
