"""A token bucket on an injected clock: the rate limiter behind requests and tokens per minute."""

from __future__ import annotations


class TokenBucket:
    """Holds up to ``capacity`` tokens, refilled at ``capacity / period`` per second.

    ``level`` may go negative: a request's tokens are only known when it ends, so they are taken
    afterwards, and the debt is paid back by the refill before anything else is admitted.
    """

    __slots__ = ("_level", "_stamp", "capacity", "rate")

    def __init__(self, capacity: int, now: float, period: float = 60.0) -> None:
        if capacity <= 0 or period <= 0:
            raise ValueError("capacity and period must be positive")
        self.capacity = float(capacity)
        self.rate = capacity / period
        self._level = float(capacity)
        self._stamp = now

    def level(self, now: float) -> float:
        if now > self._stamp:
            self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
            self._stamp = now
        return self._level

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` tokens are there (0 when they are now)."""
        missing = amount - self.level(now)
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, amount: float, now: float) -> None:
        self._level = self.level(now) - amount
