"""Budget periods: when the current one started and when the next one starts (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spillgate.config.schema import BudgetPeriod


def period_bounds(period: BudgetPeriod, wall: float) -> tuple[float, float | None]:
    """``(start, end)`` in epoch seconds of the period holding ``wall``; ``total`` never ends."""
    if period == "total":
        return 0.0, None
    now = datetime.fromtimestamp(wall, UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    else:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    return start.timestamp(), end.timestamp()
