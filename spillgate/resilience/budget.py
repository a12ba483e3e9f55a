"""The gateway-wide retry budget: extra attempts capped as a share of client requests.

An outage must never become a retry storm. Every client request may be followed by extra
attempts (retries and failovers after a failure), but over a sliding window the extra
attempts stay below ``max(floor, ratio * requests, peak requests in flight)``: the floor lets a
quiet gateway still recover a few requests, the peak lets a cold burst of concurrent requests go
around one fresh failure each, and the ratio bounds the amplification under load.

The window is a ring of time buckets (``SlidingCounts``), so every call is O(1) amortised and
the memory is fixed whatever the traffic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


class SlidingCounts:
    """Two counters summed over a sliding time window, kept in a ring of time buckets.

    The window is cut into ``buckets`` slices of ``window / buckets`` seconds; the totals
    cover the current slice and the ``buckets - 1`` before it, so an event is forgotten
    between ``window - window / buckets`` and ``window`` seconds after it happened.
    """

    __slots__ = ("_a", "_b", "_last", "_n", "_sum_a", "_sum_b", "_width")

    def __init__(self, window: float, buckets: int = 10) -> None:
        if not window > 0 or not math.isfinite(window):
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, got {buckets!r}")
        self._n = buckets
        self._width = window / buckets
        self._a = [0] * buckets
        self._b = [0] * buckets
        self._last: int | None = None
        self._sum_a = 0
        self._sum_b = 0

    def _advance(self, now: float) -> int:
        """Move the ring to the slice holding ``now``, clearing the slices that fell out."""
        index = math.floor(now / self._width)
        last = self._last
        if last is None or index - last >= self._n:
            if self._sum_a or self._sum_b:
                self.clear()
            self._last = last = index
        elif index > last:
            for step in range(last + 1, index + 1):
                slot = step % self._n
                self._sum_a -= self._a[slot]
                self._sum_b -= self._b[slot]
                self._a[slot] = 0
                self._b[slot] = 0
            self._last = last = index
        # A clock that steps back (never a monotonic one) is counted in the newest slice.
        return last % self._n

    def add(self, now: float, a: int = 0, b: int = 0) -> None:
        slot = self._advance(now)
        self._a[slot] += a
        self._b[slot] += b
        self._sum_a += a
        self._sum_b += b

    def totals(self, now: float) -> tuple[int, int]:
        """``(a, b)`` summed over the window ending at ``now``."""
        self._advance(now)
        return self._sum_a, self._sum_b

    def clear(self) -> None:
        for slot in range(self._n):
            self._a[slot] = 0
            self._b[slot] = 0
        self._sum_a = 0
        self._sum_b = 0


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    requests_in_window: int
    extra_in_window: int
    limit: float
    """How many extra attempts the window allows now: ``max(floor, ratio * requests_in_window)``."""
    requests_total: int
    extra_total: int
    rejected_total: int


class RetryBudget:
    """Caps extra attempts (retries, failovers after a failure) as a share of client requests.

    Call ``record_request()`` once per client request and ``try_spend()`` before every attempt
    that follows a failure; a ``False`` answer means "give up with the error you have".
    """

    __slots__ = (
        "_clock",
        "_counts",
        "_peak",
        "_peak_at",
        "extra_total",
        "floor",
        "others",
        "ratio",
        "rejected_total",
        "requests_total",
        "window",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        floor: int = 10,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ratio >= 0 or not math.isfinite(ratio):
            raise ValueError(f"ratio must be a finite number >= 0, got {ratio!r}")
        if floor < 0:
            raise ValueError(f"floor must be >= 0, got {floor!r}")
        self.ratio = ratio
        self.floor = floor
        self.window = window
        self._clock = clock
        self._counts = SlidingCounts(window)  # a: client requests, b: extra attempts
        self.requests_total = 0
        self.extra_total = 0
        self.rejected_total = 0
        self._peak = 0
        self._peak_at = -math.inf
        self.others = (0, 0)
        """Client requests and extra attempts of the other instances in the window (a shared
        store keeps it current; 0 alone)."""

    def record_request(self, in_flight: int = 0) -> None:
        """Count a client request; ``in_flight`` is how many are being served now, this one included."""
        now = self._clock()
        self.requests_total += 1
        self._counts.add(now, a=1)
        if in_flight >= self._peak or now - self._peak_at > self.window:
            self._peak = in_flight
            self._peak_at = now

    def _limit(self, now: float, requests: int) -> float:
        """``max(floor, ratio * requests, peak concurrency)`` over the window.

        The peak number of requests in flight is a floor too: a burst of concurrent requests
        that all meet the same fresh failure — before any breaker could open — may each go
        around it once, even in a window that holds only that burst.
        """
        peak = self._peak if now - self._peak_at <= self.window else 0
        return max(float(self.floor), self.ratio * requests, float(peak))

    def _window(self, now: float) -> tuple[int, int]:
        requests, extra = self._counts.totals(now)
        return requests + self.others[0], extra + self.others[1]

    def try_spend(self) -> bool:
        """Whether one more extra attempt is allowed; when it is, it is counted as spent."""
        now = self._clock()
        requests, extra = self._window(now)
        if extra < self._limit(now, requests):
            self._counts.add(now, b=1)
            self.extra_total += 1
            return True
        self.rejected_total += 1
        return False

    def snapshot(self) -> BudgetSnapshot:
        now = self._clock()
        requests, extra = self._window(now)
        return BudgetSnapshot(
            requests_in_window=requests,
            extra_in_window=extra,
            limit=self._limit(now, requests),
            requests_total=self.requests_total,
            extra_total=self.extra_total,
            rejected_total=self.rejected_total,
        )
