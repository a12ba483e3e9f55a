"""A hand-driven clock for the pure logic that takes one (``clock: Callable[[], float]``)."""

from __future__ import annotations

import time


class FakeClock:
    """Returns ``now``; tests move it by assigning ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ShiftedClock:
    """The real monotonic clock plus an offset tests move forward: hand it to a running gateway
    (``Runtime.create(settings, clock=...)``) and a cooldown ends at :meth:`advance`, not after a
    sleep, while real timeouts (sockets, the HTTP client) keep real time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
